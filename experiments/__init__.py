"""Past design measurements, each with the configs or probes that reproduce its report; not part of the product."""
