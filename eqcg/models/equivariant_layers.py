"""Building blocks of the E(3)-equivariant networks (e3nn).

Node features are e3nn irreps arrays laid out as ``{n_scalars}x0e + irreps_gated`` (scalars
first, the layout :class:`e3nn.nn.Gate` returns). Edges carry spherical harmonics of the
normalised displacement, times a smooth polynomial envelope (forced to 1 on bond edges, which
may be longer than the cut-off), and invariant features: a Bessel basis of the length and the
one-hot edge type. One :class:`Interaction` is a NequIP-style convolution: a channel-wise
("uvu") tensor product of a narrow projection of the sender with the edge harmonics, weighted
per edge and channel by a radial MLP, summed over neighbours, then self-interaction, a gate
and a residual connection. :class:`ChannelwiseTensorProduct` computes that tensor product
with the coupling of harmonics and Clebsch-Gordan coefficients hoisted out of the layers, and
keeps every constant in float64, so float64 runs are equivariant to round-off.
:class:`IrrepsLinear` and :class:`Gate` are e3nn's ``o3.Linear`` and ``nn.Gate`` (same maps,
same weight layout; tested equal) with fewer tensor operations per call, which is what costs
on CG systems of a few hundred beads.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.math import normalize2mom
from torch import nn
from torch_geometric.utils import scatter

from eqcg.graphs.neighbors import BOND_EDGE, N_EDGE_TYPES
from eqcg.models.mlp import mlp

_RESIDUAL_SCALE = 2.0**-0.5  # see Interaction.forward


def hidden_irreps(n_scalars: int, irreps_gated: o3.Irreps) -> o3.Irreps:
    """``{n_scalars}x0e + irreps_gated``: the layout of every hidden node feature."""
    return (o3.Irreps(f"{n_scalars}x0e") + o3.Irreps(irreps_gated)).simplify()


def gated_irreps(vector_channels: int, lmax: int) -> o3.Irreps:
    """The non-scalar part of the hidden features for edge harmonics up to ``lmax``.

    ``vector_channels x 1o`` always (velocities, accelerations and scores are polar vectors);
    with ``lmax >= 2`` also half as many ``2e`` channels (symmetric traceless tensors: the
    anisotropy of the neighbourhood, read by the full covariance head). Pseudovectors (``1e``)
    are left out: they double the cost of the convolution for little use here.
    """
    irreps = o3.Irreps(f"{vector_channels}x1o")
    if lmax >= 2:
        irreps = irreps + o3.Irreps(f"{max(vector_channels // 2, 1)}x2e")
    return irreps


class IrrepsLinear(nn.Module):
    """Equivariant linear map between irreps: e3nn's ``o3.Linear`` (no biases, ``element`` path
    normalisation) with its flat ``weight`` layout, evaluated as one matrix product per path.

    Every ``mul_in x ir`` input block feeds every ``mul_out x ir`` output block of the same
    irrep through a ``(mul_in, mul_out)`` weight block scaled by ``1 / sqrt(fan_in)``, ``fan_in``
    the input channels of that irrep; output blocks no input reaches are zero. e3nn evaluates
    the same map through generated code with several small operations per path; on the small
    node counts of CG systems those dominate, and this takes a third less time per call.

    Args:
        irreps_in: input irreps.
        irreps_out: output irreps.
    """

    def __init__(self, irreps_in: o3.Irreps | str, irreps_out: o3.Irreps | str):
        super().__init__()
        self.irreps_in, self.irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        fan_in = {ir: sum(mul for mul, ir_in in self.irreps_in if ir_in == ir)
                  for _, ir in self.irreps_out}
        # per output block: (input slice, weight slice, mul_in, mul_out, dim, 1 / sqrt(fan_in));
        # the weight blocks lie in e3nn's order: by input block, then output block
        self._paths: list[list[tuple[slice, slice, int, int, int, float]]] = [
            [] for _ in self.irreps_out
        ]
        offset = 0
        for (mul_in, ir_in), source in zip(self.irreps_in, self.irreps_in.slices()):
            for out, (mul_out, ir_out) in enumerate(self.irreps_out):
                if ir_out == ir_in:
                    self._paths[out].append((source, slice(offset, offset + mul_in * mul_out),
                                             mul_in, mul_out, ir_out.dim, fan_in[ir_out]**-0.5))
                    offset += mul_in * mul_out
        self.weight = nn.Parameter(torch.randn(offset))
        self._widths = [mul * ir.dim for mul, ir in self.irreps_out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, irreps_out.dim)`` from ``x (n, irreps_in.dim)``."""
        n = x.shape[0]
        outputs = []
        for block, width in zip(self._paths, self._widths):
            if not block:
                outputs.append(x.new_zeros(n, width))
                continue
            out = None
            for source, w, mul_in, mul_out, dim, scale in block:
                weight = self.weight[w].view(mul_in, mul_out) * scale
                if dim == 1:
                    term = x[:, source] @ weight
                else:  # (mul_out, mul_in) @ (n, mul_in, dim) -> (n, mul_out, dim)
                    term = (weight.t() @ x[:, source].reshape(n, mul_in, dim)).reshape(n, -1)
                out = term if out is None else out + term
            outputs.append(out)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)


class Gate(nn.Module):
    """e3nn's gate nonlinearity ``e3nn.nn.Gate`` with SiLU scalars and sigmoid gates, fused.

    Input ``{n_scalars}x0e + {n_gates}x0e + irreps_gated`` (one gate per gated irrep), output
    ``{n_scalars}x0e + irreps_gated``: ``c_s silu(s)`` and each gated irrep times
    ``c_g sigmoid(g)``, with e3nn's second-moment constants ``c`` (``normalize2mom``), so the
    map equals e3nn's to round-off. Plain slicing instead of e3nn's sort/extract modules.

    Args:
        n_scalars: ``0e`` channels passed through SiLU.
        irreps_gated: non-scalar irreps, each scaled by its gate.
    """

    def __init__(self, n_scalars: int, irreps_gated: o3.Irreps):
        super().__init__()
        irreps_gated = o3.Irreps(irreps_gated)
        n_gates = irreps_gated.num_irreps
        self.irreps_in = o3.Irreps(f"{n_scalars}x0e") + o3.Irreps(f"{n_gates}x0e") + irreps_gated
        self.irreps_out = o3.Irreps(f"{n_scalars}x0e") + irreps_gated
        self.n_scalars, self.n_gates = n_scalars, n_gates
        self.scalar_scale = normalize2mom(nn.functional.silu).cst
        self.gate_scale = normalize2mom(torch.sigmoid).cst
        self.blocks = [(mul, ir.dim) for mul, ir in irreps_gated]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, irreps_out.dim)`` from ``x (n, irreps_in.dim)``."""
        n, k = x.shape[0], self.n_scalars
        outputs = [nn.functional.silu(x[:, :k]) * self.scalar_scale]
        gates = torch.sigmoid(x[:, k : k + self.n_gates]) * self.gate_scale
        start, gate = k + self.n_gates, 0
        for mul, dim in self.blocks:
            gated = x[:, start : start + mul * dim].reshape(n, mul, dim)
            outputs.append((gated * gates[:, gate : gate + mul, None]).reshape(n, mul * dim))
            start, gate = start + mul * dim, gate + mul
        return torch.cat(outputs, dim=-1)


class EdgeEncoding(nn.Module):
    """Invariant edge features and harmonics from normalised edge vectors.

    Args:
        lmax: max degree of the spherical harmonics.
        n_basis: Bessel functions ``sqrt(2) sin(n pi r) / r`` (``r = |edge_vec|``, cut-off 1).
        envelope_power: ``p`` of the polynomial envelope (smooth to order ``p`` at ``r = 1``).
    """

    def __init__(self, lmax: int, n_basis: int, envelope_power: int = 6):
        super().__init__()
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        self.spherical_harmonics = o3.SphericalHarmonics(
            self.irreps_sh, normalize=True, normalization="component"
        )
        frequencies = torch.arange(1, n_basis + 1, dtype=torch.get_default_dtype())
        self.register_buffer("frequencies", frequencies)
        self.envelope_power = envelope_power
        self.scalar_dim = n_basis + N_EDGE_TYPES

    def envelope(self, r: torch.Tensor) -> torch.Tensor:
        """``(E,)`` polynomial cut-off ``u(r)``: 1 at 0, 0 with ``p`` derivatives at ``r >= 1``."""
        p = self.envelope_power
        u = (
            1.0
            - 0.5 * (p + 1) * (p + 2) * r.pow(p)
            + p * (p + 2) * r.pow(p + 1)
            - 0.5 * p * (p + 1) * r.pow(p + 2)
        )
        return torch.where(r < 1.0, u, torch.zeros_like(u))

    def forward(
        self, edge_vec: torch.Tensor, edge_type: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode ``edge_vec (E, 3)`` (normalised by the radius) and ``edge_type (E,)``.

        Returns ``sh (E, irreps_sh.dim)``, invariant ``scalars (E, n_basis + N_EDGE_TYPES)``
        and the ``envelope (E,)`` that multiplies every message (1 on bond edges).
        """
        sh = self.spherical_harmonics(edge_vec)
        r = edge_vec.norm(dim=-1)
        # sin(n pi r) / r = n pi sinc(n r): finite at r = 0
        n = self.frequencies
        bessel = math.sqrt(2.0) * math.pi * n * torch.sinc(n * r[:, None])
        edge_types = nn.functional.one_hot(edge_type, N_EDGE_TYPES).to(edge_vec.dtype)
        envelope = torch.where(edge_type == BOND_EDGE, torch.ones_like(r), self.envelope(r))
        return sh, torch.cat([bessel, edge_types], dim=-1), envelope


def radial_mlp(in_dim: int, hidden_dim: int, out_dim: int, hidden_layers: int) -> nn.Sequential:
    """``in -> [Linear, SiLU] x hidden_layers -> Linear (no bias) -> out``: per-edge weights.

    Without a bias on the output (as NequIP's radial networks) an edge whose features vanish
    sends nothing, and the largest per-edge matrix product skips the bias copy.
    """
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(width, hidden_dim), nn.SiLU()]
        width = hidden_dim
    layers.append(nn.Linear(width, out_dim, bias=False))
    return nn.Sequential(*layers)


class ChannelwiseTensorProduct(nn.Module):
    """Channel-wise (``uvu``) tensor product of sender features with edge harmonics.

    The same map as e3nn's ``o3.TensorProduct`` with one ``uvu`` instruction per path
    ``ir_in x ir_sh -> ir_out`` (``ir_out`` in ``irreps_target``), per-edge weights and
    component normalisation, evaluated in two stages. :meth:`couple` contracts the harmonics
    with the Wigner 3j symbols, ``M[e, k, i] = sqrt(dim ir_out) sum_j C_ijk Y_j(r_e)``, once per
    edge for all layers of a network; :meth:`forward` is then a ``(k x i) @ (i x u)`` product
    per edge and input block, channels last, scaled by the weights. e3nn's generic code forms
    the outer product of every feature with every harmonic, path by path and layer by layer,
    and costs several times more on CPU.

    :meth:`forward` sums the messages over each node's incoming edges and returns them in the
    e3nn layout of ``irreps_out`` (paths sorted by output irrep).

    Args:
        irreps_in: sender features (``mul x ir`` blocks).
        irreps_sh: edge harmonics (multiplicity 1 each).
        irreps_target: irreps the outputs may have; other paths are dropped.
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        irreps_sh = o3.Irreps(irreps_sh)
        wanted = {ir for _, ir in o3.Irreps(irreps_target)}
        # per path: output irrep, multiplicity, (K, u)-layout positions of its e3nn components
        outputs: list[tuple[o3.Irrep, int, torch.Tensor]] = []
        self.paths_per_block: list[int] = []
        offset = 0
        for b, (mul, ir_in) in enumerate(self.irreps_in):
            couplings, path_irreps = [], []
            for (sh_mul, ir_sh), sh_slice in zip(irreps_sh, irreps_sh.slices(), strict=True):
                if sh_mul != 1:
                    raise ValueError(f"edge harmonics need multiplicity 1, got {irreps_sh}")
                for ir_out in ir_in * ir_sh:
                    if ir_out not in wanted:
                        continue
                    coupling = torch.zeros(
                        ir_in.dim, irreps_sh.dim, ir_out.dim, dtype=torch.float64
                    )
                    coupling[:, sh_slice] = math.sqrt(ir_out.dim) * o3.wigner_3j(
                        ir_in.l, ir_sh.l, ir_out.l, dtype=torch.float64
                    )
                    couplings.append(coupling)
                    path_irreps.append(ir_out)
            if not couplings:
                raise ValueError(f"no path from {ir_in} x {irreps_sh} to {irreps_target}")
            # (i, j, K) in float64, so that a model converted with .double() stays exact
            self.register_buffer(f"coupling_{b}", torch.cat(couplings, dim=-1), persistent=False)
            path_dims = torch.tensor([ir.dim for ir in path_irreps])
            self.register_buffer(
                f"path_of_column_{b}",
                torch.repeat_interleave(torch.arange(len(path_irreps)), path_dims),
                persistent=False,
            )
            column = 0
            for ir_out in path_irreps:
                channel, component = torch.arange(mul)[:, None], torch.arange(ir_out.dim)[None, :]
                position = offset + (column + component) * mul + channel
                outputs.append((ir_out, mul, position.flatten()))
                column += ir_out.dim
            self.paths_per_block.append(len(path_irreps))
            offset += column * mul
        # sorted by irrep, so that the linear map reading the messages has few blocks
        outputs.sort(key=lambda output: output[0])
        self.irreps_out = o3.Irreps([(mul, ir) for ir, mul, _ in outputs]).simplify()
        self.register_buffer(
            "to_irreps_index", torch.cat([index for _, _, index in outputs]), persistent=False
        )
        # per input block, plain ints for the forward pass: (feature slice, mul, dim, weight slice)
        self._blocks: list[tuple[slice, int, int, slice]] = []
        weight_start = 0
        for (mul, ir_in), x_slice, paths in zip(
            self.irreps_in, self.irreps_in.slices(), self.paths_per_block, strict=True
        ):
            self._blocks.append(
                (x_slice, mul, ir_in.dim, slice(weight_start, weight_start + paths * mul))
            )
            weight_start += paths * mul
        self.weight_numel = weight_start

    def couple(self, sh: torch.Tensor) -> list[torch.Tensor]:
        """Per input block ``(E, K, ir_in.dim)`` from harmonics ``sh (E, irreps_sh.dim)``."""
        return [
            torch.einsum("ej,ijk->eki", sh, getattr(self, f"coupling_{b}").to(sh.dtype))
            for b in range(len(self._blocks))
        ]

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        coupled: list[torch.Tensor],
        weights: torch.Tensor,
    ) -> torch.Tensor:
        """``(n, irreps_out.dim)``: per-edge products summed over each node's incoming edges.

        Args:
            x: ``(n, irreps_in.dim)`` node features.
            edge_index: ``(2, E)`` sender and receiver of each edge.
            coupled: output of :meth:`couple`.
            weights: ``(E, weight_numel)``.
        """
        sender, receiver = edge_index
        summed = []
        for b, (x_slice, mul, dim, w_slice) in enumerate(self._blocks):
            w = weights[:, w_slice].reshape(weights.shape[0], -1, mul)
            # channels last: (n, u, i) -> (n, i, u) -> (E, i, u)
            x_node = x[:, x_slice].reshape(-1, mul, dim).transpose(1, 2).contiguous()
            x_edge = x_node[sender]
            path_of_column = getattr(self, f"path_of_column_{b}")
            if dim == 1:
                product = (x_edge * w).index_select(1, path_of_column) * coupled[b]
            else:
                # sum_i M[e, k, i] x[e, i, u]; a loop over i <= 2l+1 beats bmm on tiny matrices
                product = coupled[b][:, :, 0, None] * x_edge[:, None, 0]
                for i in range(1, dim):
                    product = product.addcmul_(coupled[b][:, :, i, None], x_edge[:, None, i])
                product = product * w.index_select(1, path_of_column)
            # (E, K, u) -> (n, K * u); summing per block avoids concatenating on the edges
            summed.append(scatter(product.flatten(1), receiver, dim=0, dim_size=x.shape[0],
                                  reduce="sum"))
        return torch.cat(summed, dim=-1).index_select(-1, self.to_irreps_index)


def sender_irreps(irreps_gated: o3.Irreps) -> o3.Irreps:
    """Irreps of the narrow sender features a tensor product reads: as many ``0e`` channels as
    the widest non-scalar block, plus the ``l <= 1`` part of ``irreps_gated``."""
    kept = o3.Irreps([(mul, ir) for mul, ir in o3.Irreps(irreps_gated) if ir.l <= 1])
    return hidden_irreps(max(mul for mul, _ in kept), kept)


class Interaction(nn.Module):
    """One equivariant message-passing layer, ``h -> h + Gate(W_msg m + W_self h)``.

    ``m_i = (1 / avg_neighbors) sum_j TP(x_j, u(r_ij) Y(r_ij); w(r_ij, type_ij))`` with
    ``x = W_down h`` a narrow linear projection of the sender (the tensor product's
    ``irreps_in``), ``u`` the envelope and ``w`` per-edge weights from the radial MLP.

    Args:
        n_scalars: ``0e`` channels of the node features.
        irreps_gated: non-scalar irreps of the node features.
        tensor_product: the edge tensor product (shared by the layers of a network).
        avg_neighbors: constant the neighbour sum is divided by.
    """

    def __init__(
        self,
        n_scalars: int,
        irreps_gated: o3.Irreps,
        tensor_product: ChannelwiseTensorProduct,
        avg_neighbors: float,
    ):
        super().__init__()
        self.irreps_node = hidden_irreps(n_scalars, irreps_gated)
        self.gate = Gate(n_scalars, irreps_gated)
        self.tensor_product = tensor_product
        self.down = IrrepsLinear(self.irreps_node, tensor_product.irreps_in)
        self.message_linear = IrrepsLinear(tensor_product.irreps_out, self.gate.irreps_in)
        self.self_linear = IrrepsLinear(self.irreps_node, self.gate.irreps_in)
        self.avg_neighbors = avg_neighbors

    def forward(
        self,
        h: torch.Tensor,
        edge_index: torch.Tensor,
        coupled: list[torch.Tensor],
        weights: torch.Tensor,
    ) -> torch.Tensor:
        """Update ``h (n, irreps_node.dim)``.

        ``coupled`` is ``tensor_product.couple`` of the envelope times the edge harmonics;
        ``weights (E, tensor_product.weight_numel)`` are this layer's radial weights.
        """
        messages = self.tensor_product(self.down(h), edge_index, coupled, weights)
        update = self.message_linear(messages / self.avg_neighbors) + self.self_linear(h)
        # the update holds a linear map of h itself: scaling the residual sum by 1/sqrt(2)
        # keeps feature magnitudes from doubling layer after layer (7 layers: 100x scores)
        return (h + self.gate(update)) * _RESIDUAL_SCALE


class NodeEncoder(nn.Module):
    """Invariant and equivariant node inputs -> hidden features.

    Scalars go through an MLP to the ``0e`` channels; non-scalar inputs are mixed linearly
    into the gated channels (those with no matching input irrep start at zero).

    Args:
        scalar_dim: invariant input features per node.
        irreps_in: irreps of the non-scalar inputs.
        n_scalars: ``0e`` channels of the hidden features.
        irreps_gated: non-scalar irreps of the hidden features.
        mlp_layers: hidden layers of the scalar MLP.
    """

    def __init__(
        self, scalar_dim: int, irreps_in: o3.Irreps, n_scalars: int, irreps_gated: o3.Irreps,
        mlp_layers: int,
    ):
        super().__init__()
        self.scalars = mlp(scalar_dim, n_scalars, n_scalars, mlp_layers)
        self.vectors = IrrepsLinear(irreps_in, irreps_gated)

    def forward(self, scalars: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``(n, n_scalars + irreps_gated.dim)`` from ``scalars (n, scalar_dim)`` and
        ``features (n, irreps_in.dim)``."""
        return torch.cat([self.scalars(scalars), self.vectors(features)], dim=-1)


class GatedBlock(nn.Module):
    """``h -> Gate(W h)``: a node-wise equivariant nonlinearity, irreps preserved.

    Args:
        n_scalars: ``0e`` channels of the features.
        irreps_gated: non-scalar irreps of the features.
    """

    def __init__(self, n_scalars: int, irreps_gated: o3.Irreps):
        super().__init__()
        self.gate = Gate(n_scalars, irreps_gated)
        self.linear = IrrepsLinear(hidden_irreps(n_scalars, irreps_gated), self.gate.irreps_in)
        self.irreps_out = self.gate.irreps_out

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(n, irreps_out.dim)``."""
        return self.gate(self.linear(h))


class SymmetricMatrixHead(nn.Module):
    """Symmetric ``3x3`` matrices ``S`` rotating as ``R S Rᵀ`` from node features.

    ``S0 = s I / sqrt(3) + sum_k t_k B_k + sum_m (a_m b_mᵀ + b_m a_mᵀ) / 2`` with ``s``
    (``0e``), ``t`` (``2e``, when the features have ``2e`` channels) and the vectors
    ``a_m, b_m`` (``1o``) linear in the features. ``B_k = sqrt(5) C[:, :, k]``, ``C`` e3nn's
    Wigner 3j symbol ``(1, 1, 2)``, is the orthonormal traceless symmetric basis of e3nn's
    ``2e`` (that of ``CartesianTensor("ij=ji")`` up to signs); the products give an
    anisotropic spread from the vector channels (e.g. along the velocity) even without ``2e``
    features. ``S = S0 c tanh(|S0| / c) / |S0|`` (Frobenius norm, an invariant) keeps the
    eigenvalues of ``S`` within ``±c`` (variances within ``e^±c``), so that ``expm(S)`` and its
    Cholesky factor stay well conditioned in float32. All of it is exact in float64, also for
    a module built in float32 and converted with ``.double()``.

    Args:
        irreps_in: irreps of the node features.
        n_pairs: vector pairs ``(a_m, b_m)``.
        max_norm: ``c``.
    """

    def __init__(self, irreps_in: o3.Irreps, n_pairs: int = 3, max_norm: float = 6.0):
        super().__init__()
        has_2e = o3.Irrep("2e") in {ir for _, ir in o3.Irreps(irreps_in)}
        basis = [torch.eye(3, dtype=torch.float64)[None] / math.sqrt(3.0)]
        if has_2e:
            c = o3.wigner_3j(1, 1, 2, dtype=torch.float64)
            basis.append(math.sqrt(5.0) * c.permute(2, 0, 1))
        self.register_buffer("basis", torch.cat(basis), persistent=False)
        self.n_pairs = n_pairs
        self.max_norm = max_norm
        irreps_out = o3.Irreps("1x0e") + o3.Irreps("1x2e" if has_2e else "") + o3.Irreps(
            f"{2 * n_pairs}x1o"
        )
        self.linear = IrrepsLinear(irreps_in, irreps_out)
        with torch.no_grad():  # start near S = 0 (unit covariance); not at 0: a b^T would
            self.linear.weight.mul_(0.1)  # have no gradient there

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(n, 3, 3)`` from ``h (n, irreps_in.dim)``."""
        out = self.linear(h)
        n_basis = self.basis.shape[0]
        s = torch.einsum("nk,kij->nij", out[:, :n_basis], self.basis.to(h.dtype))
        vectors = out[:, n_basis:].reshape(-1, 2 * self.n_pairs, 3)
        a, b = vectors[:, : self.n_pairs], vectors[:, self.n_pairs :]
        outer = torch.einsum("nmi,nmj->nij", a, b)
        s = s + 0.5 * (outer + outer.transpose(1, 2))
        norm = torch.linalg.vector_norm(s.flatten(1), dim=-1)
        safe_norm = norm.clamp_min(1e-6)
        scale = torch.where(
            norm > 1e-6, self.max_norm * torch.tanh(safe_norm / self.max_norm) / safe_norm, 1.0
        )
        return s * scale[:, None, None]
