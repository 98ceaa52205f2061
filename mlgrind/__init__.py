"""mlgrind: YAML study sources → printable one-pagers and Anki decks, every number computed."""
