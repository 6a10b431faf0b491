"""The controller core every kind plugs into: work queue, watches, workers, events."""
