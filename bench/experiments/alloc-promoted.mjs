// Diagnostics: alloc-sample.mjs with ALLOC_SAMPLE_PROMOTED=1 (alloc-promoted.env): what survives scavenges.
import "./alloc-sample.mjs";
