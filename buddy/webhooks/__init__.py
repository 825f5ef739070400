"""Webhooks: endpoints that owners register, events stored in the transaction of the change they
report (a transactional outbox), and their signed, retried delivery. Generic: it imports no app;
the apps (deployments, keys) enqueue their events with their own console representations, from
inside their transactions (`services.webhook_events_enqueue`)."""
