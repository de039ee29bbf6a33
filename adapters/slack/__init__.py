"""The Slack adapter: slack-bolt's AsyncApp wired to tokenbot's core (Socket Mode or HTTP)."""
