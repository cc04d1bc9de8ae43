"""The realtime slice: the stream process (quotes in, bars out) and live subscriptions."""
