"""Leaderboards (CSV + Markdown) and figures, each written beside the config that made it."""
