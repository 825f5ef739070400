"""The console: the web pages a signed-in user works in (issue 17).

An interface over every app, like the API's views: it sits in the top layer of the import
contracts with the wiring, and no app or kernel module imports it.
"""
