"""Where the sources meet: the paper's Table 1 mixture and the data card that describes it."""
