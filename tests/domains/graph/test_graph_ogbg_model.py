"""The ogbg GCN against its source, the Flax example ``examples/ogbg_molpcba`` (GraphConvNet):
jraph's graph convolution against hand numbers and the dense formula, the whole forward pass
against an independent numpy implementation, the parameter layout, init and the recipe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from domains import create_workload
from samcore.width import count_params

pytestmark = pytest.mark.graph


def _undirected(bonds: list[tuple[int, int]]) -> torch.Tensor:
    """(2, 2B) edge_index listing each bond in both directions, as OGB's graphs do."""
    pairs = [(a, b) for a, b in bonds] + [(b, a) for a, b in bonds]
    return torch.tensor(pairs, dtype=torch.long).T


def test_graph_convolution_on_a_path_by_hand():
    from domains.graph.ogbg import graph_convolution

    # path 0 - 1 - 2 and an isolated node 3; two self edges per node (Flax's setting):
    # degrees (bonds + 2) = 3, 4, 3, 2
    x = torch.tensor([[1.0], [2.0], [4.0], [5.0]], dtype=torch.float64)
    out = graph_convolution(x, _undirected([(0, 1), (1, 2)]), self_edges=2)
    hand = [
        2 * 1 / 3 + 2 / math.sqrt(3 * 4),  # node 0: itself twice over 3, node 1 over sqrt(3*4)
        1 / math.sqrt(4 * 3) + 2 * 2 / 4 + 4 / math.sqrt(4 * 3),
        2 / math.sqrt(3 * 4) + 2 * 4 / 3,
        2 * 5 / 2,  # isolated: x itself
    ]
    torch.testing.assert_close(out[:, 0], torch.tensor(hand, dtype=torch.float64))


def test_graph_convolution_normalises_by_sender_out_and_receiver_in_degree():
    """jraph pre-scales by the sender's out-degree and post-scales by the receiver's
    in-degree, each floored at 1 (a normalisation by in-degree alone would differ here)."""
    from domains.graph.ogbg import graph_convolution

    x = torch.tensor([[3.0], [7.0], [11.0]], dtype=torch.float64)
    directed = torch.tensor([[0, 0], [1, 2]])  # 0 -> 1, 0 -> 2
    out = graph_convolution(x, directed, self_edges=0)
    # node 0: no in-edges -> 0; nodes 1, 2: x_0 / sqrt(out(0) = 2 * in = 1)
    hand = [0.0, 3 / math.sqrt(2), 3 / math.sqrt(2)]
    torch.testing.assert_close(out[:, 0], torch.tensor(hand, dtype=torch.float64))


@pytest.mark.parametrize("self_edges", [1, 2])
def test_graph_convolution_equals_dense_symmetric_normalisation(self_edges):
    from domains.graph.ogbg import graph_convolution

    bonds = [(0, 1), (1, 2), (2, 3), (3, 0), (1, 4), (4, 5)]  # a ring with a tail, and node 6
    n = 7
    a = np.zeros((n, n))
    for i, j in bonds:
        a[i, j] = a[j, i] = 1
    a_hat = a + self_edges * np.eye(n)  # each self edge adds 1 to A_ii and to the degree
    d = a_hat.sum(axis=1) ** -0.5
    x = np.random.default_rng(0).normal(size=(n, 3))
    expected = d[:, None] * a_hat * d[None, :] @ x  # D^-1/2 (A + kI) D^-1/2 X
    got = graph_convolution(torch.from_numpy(x), _undirected(bonds), self_edges)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def _numpy_graph_conv_net(params: dict[str, np.ndarray], x, bonds, graph_of, steps):
    """GraphConvNet written from the Flax example's models.py, in numpy, in float64."""
    n = x.shape[0]
    a = np.zeros((n, n))
    for i, j in bonds:
        a[i, j] = a[j, i] = 1
    a_hat = a + 2 * np.eye(n)  # input pipeline's self-loop + GraphConvolution's self edge
    d = a_hat.sum(axis=1) ** -0.5
    norm_adj = d[:, None] * a_hat * d[None, :]

    def dense(name, h):
        return h @ params[f"{name}.weight"].T + params[f"{name}.bias"]

    h = dense("embed", x)
    for s in range(steps):
        m = h
        for layer in (0, 3):  # MLP: Dense, relu, (dropout) twice
            m = np.maximum(dense(f"mlps.{s}.{layer}", m), 0)
        z = h + norm_adj @ m  # skip connection around the convolution ...
        mu, var = z.mean(-1, keepdims=True), z.var(-1, keepdims=True)
        h = (z - mu) / np.sqrt(var + 1e-6) * params[f"norms.{s}.weight"] + params[f"norms.{s}.bias"]
    pooled = np.stack([h[graph_of == g].mean(0) for g in range(graph_of.max() + 1)])
    return dense("decoder", pooled)


def test_forward_pass_matches_the_flax_block_order_in_numpy():
    from torch_geometric.data import Batch, Data

    from domains.graph.ogbg import GraphConvNet

    torch.manual_seed(0)
    model = GraphConvNet(
        latent=6, num_tasks=3, num_steps=2, num_mlp_layers=2, dropout=0.1, self_edges=2
    ).double()
    with torch.no_grad():  # LayerNorm scale/shift away from 1/0 so their place matters
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.eval()  # dropout off, as Flax's deterministic=True
    g1 = Data(x=torch.randint(0, 5, (4, 9)), edge_index=_undirected([(0, 1), (1, 2), (1, 3)]))
    g2 = Data(x=torch.randint(0, 5, (3, 9)), edge_index=_undirected([(0, 1)]))  # node 2 alone
    batch = Batch.from_data_list([g1, g2])
    params = {k: v.numpy() for k, v in model.state_dict().items()}
    bonds = [(0, 1), (1, 2), (1, 3), (4, 5)]  # the same bonds after batching (g2 offset by 4)
    expected = _numpy_graph_conv_net(
        params, batch.x.double().numpy(), bonds, batch.batch.numpy(), steps=2
    )
    got = model(batch).detach().numpy()
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_node_mlp_is_dense_relu_dropout_per_layer():
    """Flax's MLP applies dropout after every activation, the last one included."""
    from domains.graph.ogbg import GraphConvNet

    model = GraphConvNet(8, 2, num_steps=5, num_mlp_layers=2, dropout=0.1, self_edges=2)
    assert len(model.mlps) == len(model.norms) == 5
    for mlp in model.mlps:
        assert [type(m) for m in mlp] == [nn.Linear, nn.ReLU, nn.Dropout] * 2
        assert all(m.p == 0.1 for m in mlp if isinstance(m, nn.Dropout))
    assert all(norm.eps == 1e-6 for norm in model.norms)  # Flax LayerNorm's epsilon


@pytest.mark.parametrize(("name", "tasks"), [("ogbg-molhiv", 1), ("ogbg-moltox21", 12)])
def test_parameter_count_is_the_flax_layout(name, tasks):
    """10L (embed 9 -> L) + 5 (2 L^2 + 2L Dense + 2L LayerNorm) + (L + 1) T."""
    workload = create_workload(name, "paper")
    for width, latent in zip(workload.widths, (128, 256, 512)):
        with torch.device("meta"):
            got = count_params(workload.build_model(width))
        assert got == 10 * latent + 5 * (2 * latent**2 + 4 * latent) + (latent + 1) * tasks


def test_dense_init_is_flax_lecun_normal():
    """Flax Dense: truncated normal at 2 std with variance exactly 1 / fan_in, zero bias."""
    from domains.graph.ogbg import GraphConvNet

    torch.manual_seed(0)
    model = GraphConvNet(512, 128, num_steps=1, num_mlp_layers=2, dropout=0.0, self_edges=2)
    w = model.mlps[0][0].weight
    assert w.std().item() == pytest.approx(1 / math.sqrt(512), rel=0.02)
    bound = 2 / math.sqrt(512) / 0.87962566103423978
    assert w.abs().max().item() <= bound
    assert all(m.bias.abs().max() == 0 for m in model.modules() if isinstance(m, nn.Linear))


def test_molpcba_paper_recipe_matches_flax_default_config():
    c = create_workload("ogbg-molpcba", "paper").config
    assert (c.optimizer, c.learning_rate, c.weight_decay, c.lr_schedule) == (
        "adam",
        1e-3,
        0.0,
        "constant",
    )
    assert (c.batch_size, c.dropout, c.num_message_passing_steps, c.num_mlp_layers) == (
        256,
        0.1,
        5,
        2,
    )
    assert c.base_latent == 128 and c.self_edges == 2
    assert c.rho_grid == (0.01, 0.02, 0.05, 0.1, 0.2)  # PAPERS.md, the paper's Table 2
    assert 99_000 <= c.num_epochs * math.ceil(350_343 / 256) <= 100_000  # ~100k steps
    workload = create_workload("ogbg-molpcba", "paper")
    assert (workload.target.name, workload.target.mode) == ("ap", "max")
