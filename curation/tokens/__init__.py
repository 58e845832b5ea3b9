"""From text to the token stream: the SentencePiece BPE tokenizer and the token shards."""
