"""HTTP and websocket endpoints; thin shells over app.services."""
