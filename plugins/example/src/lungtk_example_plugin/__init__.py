"""An example third-party lungtk plugin: a bright-blob detector and a `lungtk example` command."""
