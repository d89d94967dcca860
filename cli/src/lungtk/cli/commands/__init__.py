"""Built-in command groups of the ``lungtk`` CLI, one module each."""
