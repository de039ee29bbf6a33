"""Discord adapter: discord.py client, slash-command tree, views and modals, Conversation."""
