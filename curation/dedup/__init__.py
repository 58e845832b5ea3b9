"""Global dedup across every crawl and source: MinHash signatures, LSH buckets, verified
pairs, connected components, and the survivors (`near_dedup.Deduplicated`)."""
