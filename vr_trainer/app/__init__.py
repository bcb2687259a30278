"""Application core: the frame loop and the contracts with the remote bridge."""
