"""The app's views, one blueprint per role: sign-in, the page, the API, the stream."""
