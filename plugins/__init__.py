"""genbench's built-in plugins. Each module is an entry point in the ``genbench`` group,
registered exactly as a third party's plugin is; the core never imports them."""
