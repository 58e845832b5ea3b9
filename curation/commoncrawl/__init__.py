"""CommonCrawl as the paper processes it: archives to documents, CCNet (line dedup, language
id, KenLM perplexity), the Wikipedia-reference classifier, exact dedup, and the C4 branch."""
