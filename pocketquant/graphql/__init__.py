"""What the GraphQL slices share, below them: the request context, user-facing errors,
scalars and the common types (Interval, InvalidInput). The slices (history, realtime)
import this, never each other; ``pocketquant/api`` assembles them on top."""
