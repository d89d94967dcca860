"""Reading and writing CT volumes and label masks."""
