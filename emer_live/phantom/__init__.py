"""The synthetic participant ("phantom"): a known truth to measure the instrument against."""
