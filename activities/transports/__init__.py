"""How rules reach the outside world: SMTP (`mail`), SMS providers (`sms`), outbound HTTP (`net`)."""
