"""Platform adapters: each turns one platform's events into core turns and streams replies back."""
