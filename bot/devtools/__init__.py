"""Offline tools shared by the demo and the tests: a fake Bot API and update factories."""
