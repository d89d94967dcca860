"""lungtk.train"""
