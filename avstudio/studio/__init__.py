"""The app's Qt-free state."""
