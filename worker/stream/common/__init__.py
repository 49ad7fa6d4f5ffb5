"""What the stream's stages share: record types, the ports (Protocols at the seams), guard, hot swap, memory budget,
stats and timing. They import only each other, never a stage nor a Kafka adapter."""
