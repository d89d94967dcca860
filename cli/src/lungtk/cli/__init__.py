"""lungtk.cli: the `lungtk` command line."""
