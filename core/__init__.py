"""gptsbot core: platform-neutral config, GPT naming, the GPTs client and the conversation flow."""

__version__ = "0.1.0"
