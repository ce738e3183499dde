"""MQTT: the output (client), topic names (topics), Home Assistant discovery (discovery), what every
connect says (announce) and the count and choice rules' values (values)."""
