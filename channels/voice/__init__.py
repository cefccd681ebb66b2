"""The voice channel: Asterisk over AMI and FastAGI."""
