# The emulator's pytest plugin provides the ``bitmex_emulator`` fixture.
pytest_plugins = ["bitmex_trio_websocket.emulator.pytest_plugin"]
