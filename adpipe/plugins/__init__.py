"""Built-in plugins, registered through the adpipe.plugins entry point like any third-party plugin."""
