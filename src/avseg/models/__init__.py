"""Model architectures: AV2T-SAM, TeSO and shared building blocks."""
