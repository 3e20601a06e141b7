"""Image subtraction: engines (ZOGY built in), chunked processing, candidate vetting."""
