"""The GUI (to come). It talks to the trainer and config only; nothing here imports modules/wan."""
