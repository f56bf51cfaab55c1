"""Graph domain: the paper's GCN on OGB molecule graphs (ogbg-molhiv, ogbg-moltox21,
ogbg-molpcba) and 2-layer GCN node classification on Planetoid (Cora, CiteSeer).

torch_geometric, ogb and rdkit are imported inside functions only, so importing this package
is cheap; a missing extra fails when a workload is built, naming ``pip install -e .[graph]``.
"""

from domains.graph import ogbg, planetoid  # noqa: F401  (register their workloads)
