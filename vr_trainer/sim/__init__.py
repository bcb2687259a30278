"""Simulation: instruments, annotations and procedure state. No GL, no asyncio."""
