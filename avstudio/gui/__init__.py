"""The desktop app (Qt lives only in this package). Entry point: :func:`avstudio.gui.app.main`."""
