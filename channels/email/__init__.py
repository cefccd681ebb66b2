"""The e-mail channel: our SMTP server for residents' mail, replies through a smarthost."""
