"""Alerts: rules on actual and forecast values, a persisted life cycle, and notifiers.

rules.py (pure condition evaluation, forecast crossing probability), machine.py (the per-episode
state machine with hysteresis and minimum duration), tables.py (alerts, outbox and deliveries in
the store), engine.py (reads the store on the node's clock and drives the machines), notify.py
(MQTT and webhook notifiers and their durable dispatcher). docs/alerts.md tells the whole story.
"""
