"""Display backends (headless, desktop, openxr) behind one small interface; imported lazily."""
