"""The mesh products of local bases, without the dense (M, n) matrices: the IAT's banded kernel.

A side of the layer is one mesh matrix A (M, n): Φ, or Ψ with its quadrature weight. The layer
needs two products with it, *expand* (the state on the mesh, v ↦ A v for a batch of columns, (n, B)
→ (M, B)) and its *adjoint* (u ↦ Aᵀ u, (M, B) → (n, B)). Dense, each costs M·n·B multiply-adds;
for a local basis a mesh point touches at most 3 basis functions, so both can cost O(M·B).

The kernel works on *columns* (batch last) so that the layer's input and output transposes are
free views, and it orders the mesh by position within a cell first: mesh point k = i·r + p (cell
i, offset p < r) is row p·n + i. The order of the mesh does not change the layer (ReLU acts point
by point and both sides use the same order); it lets a translate basis be a few small products:

* :class:`Translates`. rect, pwl and pwq are translates of one function by whole cells, so
  A[i·r + p, j] = c_j · G[i - j - D0, p] for a (L, r) table G of the L cells a function spans (pwq:
  3), a column scale c (Ψ's normalisation differs at the two boundary functions) and an offset D0.
  Expand is one (r, L) × (L, n·B) product of G with L shifted copies of v; the adjoint one
  (L, r) × (r, n·B) product and L shifted adds. Detected from the matrix itself and checked
  against it to rounding, so a basis that is not such a family is never treated as one.
* :class:`Rows`. Any other side whose non-zeros lie within a few cells of the diagonal (the
  wavelets pwl-w and rect-w, whose nodes sit on a grid of n + 1 cells, not n, so they are not
  translates by whole cells): the same slab products with a weight per row instead of one number,
  A[i·r + p, j] = W[i - j - D0, p, i], read off the matrix exactly.
* :class:`Sparse`. A banded side whose band is wider than ``ROWS_SPAN`` cells (the coarse levels of
  the dyadic wavelets span most of the interval): sparse CSR products.
* :class:`Dense`. A global side (fourier): the dense products, in the same order and layout.
"""

from __future__ import annotations

import warnings

import torch

TRANSLATE_ULPS = 64  # error allowed when matching a matrix to its translate table, in units of eps
ROWS_SPAN = 6  # widest band (in cells) that :class:`Rows` takes; wider ones go to :class:`Sparse`


def cell_major(matrix: torch.Tensor, r: int) -> torch.Tensor:
    """Rows of a mesh matrix (M, n) reordered from k = i·r + p to p·n + i (see the module)."""
    m, n = matrix.shape
    return matrix.view(n, r, n).transpose(0, 1).reshape(m, n)


def translates(matrix: torch.Tensor, r: int) -> tuple[torch.Tensor, int, torch.Tensor] | None:
    """(G (L, r), D0, c (n,)) with matrix[i·r + p, j] = c_j G[i - j - D0, p], or None.

    G is read off a middle column and c makes each column's |mass| match; every entry in the band
    must then agree with ``matrix`` to ``TRANSLATE_ULPS`` units of its dtype's eps relative to its
    largest entry (rounding, no more), and nothing may lie outside the band. On the CPU.
    """
    m, n = matrix.shape
    j0 = n // 2
    rows = torch.nonzero(matrix[:, j0]).flatten()
    if len(rows) == 0:
        return None
    i0, i1 = int(rows.min()) // r, int(rows.max()) // r
    table = matrix[i0 * r : (i1 + 1) * r, j0].reshape(i1 - i0 + 1, r)
    d0 = i0 - j0
    cells = matrix.view(n, r, n)  # (cell i, offset p, column j)
    unit_mass = torch.zeros(n, dtype=matrix.dtype)
    band = []
    for lag in range(len(table)):
        i = torch.arange(n)
        j = i - d0 - lag
        ok = (j >= 0) & (j < n)
        unit_mass.index_add_(0, j[ok], table[lag].abs().sum().expand(int(ok.sum())))
        band.append((lag, i[ok], j[ok]))
    if torch.any(unit_mass == 0):
        return None
    scale = matrix.abs().sum(0) / unit_mass
    tol = TRANSLATE_ULPS * torch.finfo(matrix.dtype).eps * float(matrix.abs().max())
    inside = 0
    for lag, i, j in band:
        values = cells[i, :, j]  # (N, r)
        if float((values - table[lag] * scale[j, None]).abs().max()) > tol:
            return None
        inside += int((values != 0).sum())
    if int((matrix != 0).sum()) != inside:  # a non-zero outside the band
        return None
    return table, d0, scale


class Dense:
    """A side as its dense matrix (cell-major rows)."""

    def __init__(self, matrix: torch.Tensor):
        self.a = matrix.contiguous()

    def expand(self, v: torch.Tensor) -> torch.Tensor:
        return self.a @ v

    def adjoint(self, u: torch.Tensor) -> torch.Tensor:
        return self.a.T @ u


class Sparse:
    """A banded side as sparse CSR matrices (cell-major rows) and its transpose."""

    def __init__(self, matrix: torch.Tensor):
        with warnings.catch_warnings():  # torch flags its sparse CSR support as beta
            warnings.simplefilter("ignore", UserWarning)
            self.a = matrix.contiguous().to_sparse_csr()
            self.a_t = matrix.T.contiguous().to_sparse_csr()

    def expand(self, v: torch.Tensor) -> torch.Tensor:
        return self.a @ v.contiguous()

    def adjoint(self, u: torch.Tensor) -> torch.Tensor:
        return self.a_t @ u


class Slabs:
    """A banded side worked one mesh *slab* at a time: the n points at offset p of every cell,
    (n, B). Slab p of the state is Σ_t w_t · v[i - o_t] over the slab's *terms* (o_t: a shift in
    cells, w_t: a weight), and the adjoint adds each slab back with the same shifts and weights:
    a few scaled adds per slab, with no dense product and no (M, B) temporary. Shifts run on a copy
    of v padded with zeros on both sides, so no add needs a boundary case. A subclass gives the
    terms and how a weight scales (:meth:`axpy`); a term whose weight is zero is never made."""

    def __init__(self, r: int, n: int, shifts: list[int], terms: list[list], scale: torch.Tensor | None):
        self.r, self.n = r, n
        self.terms = terms  # per slab p: [(shift, weight), ...]
        self.lo, self.hi = max(0, *shifts), max(0, *(-o for o in shifts))
        self.scale = None if scale is None else scale[:, None].contiguous()  # (n, 1)
        self._scratch: dict[str, tuple] = {}

    @staticmethod
    def axpy(out: torch.Tensor, x: torch.Tensor, w) -> None:
        """out += w·x, in place."""
        raise NotImplementedError

    def scratch(self, name: str, rows: int, like: torch.Tensor) -> torch.Tensor:
        """A (rows, B) work tensor kept between calls: fresh tensors of this size cost the CPU a
        page fault per 4 KiB on first touch, more than the arithmetic. Only for values that are
        neither returned nor saved for backward, so a later call may overwrite them."""
        key = (name, rows, like.shape[-1], like.dtype, like.device)
        if self._scratch.get(name, (None,))[0] != key:
            self._scratch[name] = (key, like.new_empty(rows, like.shape[-1]))
        return self._scratch[name][1]

    def padded(self, v: torch.Tensor, name: str = "in") -> torch.Tensor:
        """c·v (n, B) with ``lo`` zero rows above and ``hi`` below, in a scratch tensor."""
        out = self.scratch(name, self.n + self.lo + self.hi, v)
        middle = out[self.lo : self.lo + self.n]
        if self.scale is not None:
            torch.mul(v, self.scale, out=middle)
        else:
            middle.copy_(v)
        out[: self.lo].zero_()
        out[self.lo + self.n :].zero_()
        return out

    def window(self, padded: torch.Tensor, o: int) -> torch.Tensor:
        """The n rows of a padded tensor that hold row i - o at row i (a view)."""
        return padded[self.lo - o : self.lo - o + self.n]

    def unpad(self, acc: torch.Tensor) -> torch.Tensor:
        """The adjoint c_j Σ … (n, B) from a filled accumulator (a view of it)."""
        out = acc[self.lo : self.lo + self.n]
        return out.mul_(self.scale) if self.scale is not None else out

    def slab(self, vp: torch.Tensor, p: int, out: torch.Tensor) -> torch.Tensor:
        """Slab p of the state, Σ_t w_t v[i - o_t], into ``out`` (n, B), vp from :meth:`padded`."""
        terms = self.terms[p]
        if not terms:
            return out.zero_()
        o, w = terms[0]
        torch.mul(self.window(vp, o), w, out=out)
        for o, w in terms[1:]:
            self.axpy(out, self.window(vp, o), w)
        return out

    def add_slab(self, z: torch.Tensor, p: int, acc: torch.Tensor | None) -> torch.Tensor:
        """acc[i - o_t] += w_t z[i] for slab p's terms and a slab z (n, B); with acc None a new
        padded accumulator, its first term written in place (a product, not a fill and an add) and
        only the rows outside it zeroed. Returns the accumulator."""
        terms = self.terms[p]
        if acc is None:
            acc = z.new_empty(self.n + self.lo + self.hi, z.shape[-1])
            if not terms:
                return acc.zero_()
            o, w = terms[0]
            start = self.lo - o
            acc[:start].zero_()
            acc[start + self.n :].zero_()
            torch.mul(z, w, out=acc[start : start + self.n])
            terms = terms[1:]
        for o, w in terms:
            self.axpy(self.window(acc, o), z, w)
        return acc

    def expand(self, v: torch.Tensor) -> torch.Tensor:
        """(n, B) → (M, B), the mesh in cell-major order."""
        vp = self.padded(v)
        out = v.new_empty(self.r, self.n, v.shape[-1])
        for p in range(self.r):
            self.slab(vp, p, out[p])
        return out.view(self.r * self.n, -1)

    def adjoint(self, u: torch.Tensor) -> torch.Tensor:
        """(M, B) → (n, B), from the mesh in cell-major order."""
        acc = None
        for p, z in enumerate(u.view(self.r, self.n, -1)):
            acc = self.add_slab(z, p, acc)
        return self.unpad(acc)


class Translates(Slabs):
    """A side whose functions are translates by whole cells (see :func:`translates`): slab p of
    the state is Σ_l G[l, p] c v[i - D0 - l], each term's weight one host number (scaling by it
    reads nothing back), and the adjoint y[j] = c_j Σ_l Σ_p G[l, p] u[p·n + j + D0 + l]."""

    def __init__(self, table: torch.Tensor, d0: int, scale: torch.Tensor | None, n: int):
        span, r = table.shape
        weights = table.double().cpu().tolist()
        shifts = [d0 + lag for lag in range(span)]
        terms = [[(shifts[lag], weights[lag][p]) for lag in range(span) if weights[lag][p]] for p in range(r)]
        super().__init__(r, n, shifts, terms, scale)

    @staticmethod
    def axpy(out: torch.Tensor, x: torch.Tensor, w: float) -> None:
        out.add_(x, alpha=w)


def rows(matrix: torch.Tensor, r: int, max_span: int = ROWS_SPAN) -> tuple[torch.Tensor, int] | None:
    """(W (L, r, n), D0) with matrix[i·r + p, j] = W[i - j - D0, p, i] for every non-zero, or None
    when the non-zeros span more than ``max_span`` cells of lag i - j (or there are none)."""
    m, n = matrix.shape
    k, j = torch.nonzero(matrix, as_tuple=True)
    if len(k) == 0:
        return None
    i, p = k // r, k % r
    lag = i - j
    d0 = int(lag.min())
    span = int(lag.max()) - d0 + 1
    if span > max_span:
        return None
    table = matrix.new_zeros(span, r, n)
    table[lag - d0, p, i] = matrix[k, j]
    return table, d0


class Rows(Slabs):
    """A banded side with a weight per row (see :func:`rows`): slab p of the state is
    Σ_l W[l, p, i] v[i - D0 - l], and the adjoint y[j] = Σ_l Σ_p W[l, p, i] u[p·n + i] at
    i = j + D0 + l. The weights are the matrix's own entries (no scale), each an (n, 1) column."""

    def __init__(self, table: torch.Tensor, d0: int):
        span, r, n = table.shape
        shifts = [d0 + lag for lag in range(span)]
        terms = [
            [(shifts[lag], table[lag, p][:, None].contiguous()) for lag in range(span) if table[lag, p].any()]
            for p in range(r)
        ]
        super().__init__(r, n, shifts, terms, None)

    @staticmethod
    def axpy(out: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> None:
        out.addcmul_(x, w)


def side(matrix: torch.Tensor, r: int, local: bool):
    """The product object for one side: the layer's mesh matrix (M, n) in natural row order, on
    its device and in its dtype (the tables are its own values, so the kernel matches the dense one)."""
    if local:
        found = translates(matrix.cpu(), r)
        if found is not None:
            table, d0, scale = found
            same = bool(torch.all(scale == 1))
            to = {"dtype": matrix.dtype, "device": matrix.device}
            return Translates(table.to(**to), d0, None if same else scale.to(**to), matrix.shape[1])
        found = rows(matrix, r)
        if found is not None:
            return Rows(*found)
    ordered = cell_major(matrix, r)
    return Sparse(ordered) if local else Dense(ordered)


class IATReLULocal(torch.autograd.Function):
    """The ReLU IAT through :func:`side` products, on columns; saves only the bool pattern (M, B)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, phi, psi) -> torch.Tensor:
        z = phi.expand(x.T).clamp_(min=0)  # (M, B), cell-major mesh
        mask = z.bool()
        ctx.save_for_backward(mask)
        ctx.sides = (phi, psi)
        return psi.adjoint(z).T  # (B, n), a transposed view

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        (mask,) = ctx.saved_tensors
        phi, psi = ctx.sides
        grad_z = psi.expand(grad_y.T).mul_(mask.view(torch.uint8))
        return phi.adjoint(grad_z).T, None, None


class IATReLUSlabs(torch.autograd.Function):
    """The ReLU IAT when both sides are :class:`Slabs`, fused slab by slab: the state, its ReLU
    and the output of one slab (n, B) are done before the next, so no (M, B) float tensor exists;
    the pattern (M, B) bool is filled slab by slab and is all that is saved."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, phi: Slabs, psi: Slabs) -> torch.Tensor:
        xp, acc = phi.padded(x.T), None
        mask = torch.empty(phi.r, phi.n, x.shape[0], dtype=torch.bool, device=x.device)
        slab = phi.scratch("slab", phi.n, xp)
        for p in range(phi.r):
            phi.slab(xp, p, slab).clamp_(min=0)
            mask[p].copy_(slab)  # nonzero after the clamp: the pattern Φx > 0
            acc = psi.add_slab(slab, p, acc)
        ctx.save_for_backward(mask)
        ctx.sides = (phi, psi)
        return psi.unpad(acc).T

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        (mask,) = ctx.saved_tensors
        phi, psi = ctx.sides
        gp, acc = psi.padded(grad_y.T, "grad"), None
        slab = phi.scratch("slab", phi.n, gp)
        for p in range(phi.r):
            psi.slab(gp, p, slab).mul_(mask[p].view(torch.uint8))
            acc = phi.add_slab(slab, p, acc)
        return phi.unpad(acc).T, None, None


def apply(x: torch.Tensor, phi, psi) -> torch.Tensor:
    """The ReLU IAT of a batch x (B, n) through two sides from :func:`side`."""
    if isinstance(phi, Slabs) and isinstance(psi, Slabs):
        return IATReLUSlabs.apply(x, phi, psi)
    return IATReLULocal.apply(x, phi, psi)
