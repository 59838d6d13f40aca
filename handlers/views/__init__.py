"""Views shared by several flows: what a screen looks like, never what a press does.

A flow imports views; a view never imports a flow; no flow imports another flow.
"""
