"""The automation console in the browser, at /ui/."""
