"""Retrieval inside the boundary (docs/retrieval.md).

Documents are parsed, chunked and embedded on the platform's own hosts; each
chunk carries its source document's access list into the index, and every
search applies that list inside the search. An index is bound to the digests
of the parser, the chunker configuration and the embedding model that built
it: a query embedded by another model is refused, and a change of any of them
builds a new index behind an alias that is switched in one atomic step.
Two backends keep one contract: OpenSearch (production) and an embedded
engine (SQLite with sqlite-vec and FTS5) for the lab and small sites.
"""
