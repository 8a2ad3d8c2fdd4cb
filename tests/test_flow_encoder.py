"""Flow encoder: topological-order updates, batching, determinism, ranking real NB-201 cells."""

import dgl
import numpy as np
import pytest
import torch

from nasflow.predictors.encoders import GINLayer
from nasflow.predictors.flow_encoder import FlowEncoder, FlowLayer, flow_plan, longest_path_levels
from nasflow.predictors.graphs import CellBatch, GraphCache

DIM = 8


def chain_batch(length: int) -> CellBatch:
    """One cell that is a single path 0 -> 1 -> ... -> length-1, edges both ways as in GraphCache."""
    src = torch.arange(length - 1)
    graph = dgl.graph((torch.cat([src, src + 1]), torch.cat([src + 1, src])), num_nodes=length)
    return CellBatch(graph, torch.zeros(length, dtype=torch.long), torch.zeros(length, dtype=torch.long), 1)


def states_after(layer_fn, h):
    with torch.no_grad():
        return layer_fn(h)


def test_one_flow_layer_reaches_along_a_long_path_a_gnn_layer_does_not():
    torch.manual_seed(0)
    n = 6
    batch = chain_batch(n)
    plan = flow_plan(batch)
    h = torch.randn(n, DIM)
    h_changed = h.clone()
    h_changed[0] += 1.0  # perturb the input node only
    last = n - 1

    flow = FlowLayer(DIM)
    out, out_changed = states_after(lambda x: flow(plan, x), h), states_after(lambda x: flow(plan, x), h_changed)
    # five hops away, one flow layer already sees the input node
    assert (out[last] - out_changed[last]).abs().max() > 1e-4

    gin = GINLayer(DIM)
    g_out, g_changed = states_after(lambda x: gin(batch.graph, x), h), states_after(lambda x: gin(batch.graph, x), h_changed)
    assert torch.equal(g_out[last], g_changed[last])  # a 1-hop layer cannot
    assert (g_out[1] - g_changed[1]).abs().max() > 1e-4  # (but it does pass messages)


def test_forward_sweep_is_causal_and_backward_sweep_carries_the_gradient_path():
    """The forward sweep of node k reads only nodes <= k; the backward sweep brings the output to the input."""
    torch.manual_seed(1)
    n = 5
    plan = flow_plan(chain_batch(n))
    flow = FlowLayer(DIM)
    h = torch.randn(n, DIM)
    h_changed = h.clone()
    h_changed[n - 1] += 1.0  # perturb the output node only
    with torch.no_grad():
        fwd = flow.forward_sweep(h, plan.roots, plan.forward)
        fwd_changed = flow.forward_sweep(h_changed, plan.roots, plan.forward)
        both = flow(plan, h)
        both_changed = flow(plan, h_changed)
    assert torch.equal(fwd[: n - 1], fwd_changed[: n - 1])
    assert (both[0] - both_changed[0]).abs().max() > 1e-4


def test_levels_follow_the_longest_path(nb201):
    # input, then the op nodes of edges 0->1, 0->2, 1->2, 0->3, 1->3, 2->3, then output
    graphs = GraphCache(nb201)
    plan = flow_plan(graphs.batch([nb201.enumerate()[0]]))
    forward_nodes = [nodes.tolist() for nodes, _, _ in plan.forward]
    assert plan.roots.tolist() == [0] and plan.sinks.tolist() == [7]
    assert forward_nodes == [[1, 2, 4], [3, 5], [6], [7]]
    backward_nodes = [nodes.tolist() for nodes, _, _ in plan.backward]
    assert backward_nodes == [[4, 5, 6], [2, 3], [1], [0]]
    with pytest.raises(ValueError, match="cycle"):
        longest_path_levels(torch.tensor([0, 1]), torch.tensor([1, 0]), 2)


@pytest.fixture(scope="module")
def nb101_cells():
    from nasflow.spaces import get_space

    space = get_space("nb101")
    rng = np.random.default_rng(0)
    return space, [space.sample(rng) for _ in range(40)]


def test_cells_in_a_batch_do_not_interact(nb101_cells):
    """Mixed sizes and depths (NB-101): each cell's embedding is the same in any batch order."""
    space, cells = nb101_cells
    assert len({len(space.to_graph(c).ops) for c in cells}) > 1
    graphs = GraphCache(space)
    torch.manual_seed(2)
    enc = FlowEncoder(len(graphs.vocab), dim=16, layers=2, dropout=0.1).eval()
    order = np.random.default_rng(3).permutation(len(cells))
    with torch.no_grad():
        out = enc(graphs.batch(cells))
        permuted = enc(graphs.batch([cells[i] for i in order]))
        alone = enc(graphs.batch(cells[5:6]))
    torch.testing.assert_close(permuted, out[order], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone[0], out[5], rtol=1e-5, atol=1e-6)


def test_deterministic_and_trainable(nb201):
    graphs = GraphCache(nb201)
    batch = graphs.batch(nb201.enumerate()[:64])

    def build():
        torch.manual_seed(4)
        return FlowEncoder(len(graphs.vocab), dim=16, layers=2, dropout=0.1)

    a, b = build(), build()
    torch.manual_seed(5)
    out_a = a(batch)
    torch.manual_seed(5)
    out_b = b(batch)
    assert torch.equal(out_a, out_b)
    out_a.sum().backward()
    # every parameter, of both sweeps and every layer, gets a gradient: none is dead weight
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in a.parameters())


def _with_score_bias(state: dict, generator: torch.Generator) -> dict:
    """``state`` as an encoder saved before the attention score lost its bias would hold it."""
    biases = {k[: -len("weight")] + "bias": torch.randn(1, generator=generator)
              for k in state if k.endswith("score.weight")}
    assert biases
    return {**state, **biases}


def test_a_state_saved_with_the_old_score_bias_loads_and_scores_the_same(nb201):
    """The bias fed a softmax over each node's predecessors, so dropping a saved one changes no output."""
    graphs = GraphCache(nb201)
    batch = graphs.batch(nb201.enumerate()[:64])
    torch.manual_seed(4)
    encoder = FlowEncoder(len(graphs.vocab), dim=16, layers=2).eval()
    old = _with_score_bias(encoder.state_dict(), torch.Generator().manual_seed(0))
    loaded = FlowEncoder(len(graphs.vocab), dim=16, layers=2).eval()
    loaded.load_state_dict(old)  # strict: any other unexpected name still fails
    assert "layers.0.forward_sweep.score.bias" not in loaded.state_dict()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), encoder(batch), rtol=0, atol=1e-6)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        loaded.load_state_dict({**old, "layers.0.forward_sweep.gate.bias": torch.zeros(1)})


def test_a_flow_predictor_file_with_the_old_score_bias_loads(nb201, tmp_path):
    from nasflow import Predictor, safe_io
    from nasflow.predictors import checkpoint

    cells = nb201.enumerate()[:40]
    values = np.linspace(0.0, 1.0, len(cells))
    p = Predictor(nb201, encoder="flow", pretrain="none", seed=0, dim=8, layers=1, epochs=3).fit(cells, values)
    p.save(tmp_path / "new.nfp")
    document, tensors = safe_io.load(tmp_path / "new.nfp", checkpoint.FORMAT, "predictor checkpoint")
    safe_io.save(tmp_path / "old.nfp", _with_score_bias(tensors, torch.Generator().manual_seed(1)), document)
    old = Predictor.load(tmp_path / "old.nfp", space=nb201)
    np.testing.assert_allclose(old.predict(cells), p.predict(cells), rtol=0, atol=1e-6)


def test_flow_predictor_ranks_held_out_nb201_cells(nb201, nb201_oracle):
    """Registered as encoder='flow': 100 labeled cells rank 2,000 unseen ones (a broken model gives ~0)."""
    from nasflow import Predictor
    from nasflow.metrics import kendall_tau

    archs = nb201.enumerate()
    order = np.random.default_rng(7).permutation(len(archs))
    values = np.array([nb201_oracle.query(archs[i]).valid for i in order[:2140]])
    cells = [archs[i] for i in order[:2140]]
    p = Predictor(nb201, encoder="flow", pretrain="none", seed=0, dim=16, layers=2, epochs=60)
    p.fit(cells[:100], values[:100], cells[100:140], values[100:140])
    tau = kendall_tau(p.predict(cells[140:]), values[140:])
    assert tau > 0.45, tau


def test_fgp_pretraining_and_fine_tuning_work_with_the_flow_encoder(nb201, nb201_oracle):
    from nasflow import Predictor

    archs = nb201.enumerate()[::20][:512]
    values = np.array([nb201_oracle.query(a).valid for a in archs])
    p = Predictor(nb201, encoder="flow", pretrain="fgp", seed=1, dim=8, layers=1, proxy=None, cache=False,
                  pretrain_epochs=4, pretrain_batch=128, epochs=5)  # fmt: skip
    p.pretrain(archs)
    assert len(p.pretrain_losses) == 4 and p.pretrain_losses[-1] < p.pretrain_losses[0]
    p.fit(archs[:50], values[:50])
    # fine-tuning starts from the pre-trained flow encoder, not a fresh one
    fresh = Predictor(nb201, encoder="flow", pretrain="none", seed=1, dim=8, layers=1, epochs=5).fit(archs[:50], values[:50])
    assert not np.allclose(p.predict(archs[50:]), fresh.predict(archs[50:]))
