"""Machine vectors inside Numba loops: the accumulators of the conv micro-kernels.

LLVM vectorises a loop over a row, but not a register-blocked kernel: a tile of
running sums (say 4 output channels × 64 positions) that stays in registers while
the loop walks the taps. Written with scalars, arrays or fixed inner loops, the
sums went back to memory on every tap (the assembly showed it), and the conv ran
at 45–80 GFLOPS on a Zen 4 core whose peak is about 110. Here a vector of
:data:`VECTOR_BYTES` is a Numba type of its own, one LLVM ``<W x float>`` value,
so a kernel can name sixteen of them, and LLVM keeps them in registers
(:mod:`.conv`'s micro-kernels run at 95–113 GFLOPS there). Only as many as
the machine has, though: the same sixteen on a Zen 3 core, whose AVX2 has 16
registers, not 32, spilled and ran at half speed, hence the tiles below.

Nine operations, each an ``@intrinsic`` that emits a few lines of LLVM IR:

* ``vector_width(row)``: W, the lanes of a vector of row's dtype (a compile-time constant);
  ``tile_width(row)``, ``tile_load`` and ``tile_splat`` do the same for the micro-kernels' *tiles*
  (:data:`TILE_BYTES`), and every other operation takes a tile as it takes a vector;
* ``vector_load(row, i)`` / ``vector_store(row, i, v)``: ``row[i:i + W]``, unaligned,
  unchecked (the caller's arrays must reach ``i + W``);
* ``vector_splat(x)``: W copies of a scalar;
* ``vector_fma(a, b, c)``: ``a·b + c`` lane by lane, rounded once (``llvm.fma``);
* ``vector_add(a, b)`` / ``vector_sub(a, b)``: ``a + b`` and ``a − b`` lane by lane (the Winograd transforms);
* ``vector_max(a, b)``: lane by lane, ``b`` where ``b > a``, else ``a`` (a NaN in ``b`` is passed over:
  the callers find NaNs through the sum, see :func:`lanes._sum_and_first_max`);
* ``vector_sum(v)`` / ``vector_peak(v)``: the sum / the largest of the lanes, halving in a fixed tree
  (lanes 0..W/2-1 against lanes W/2..W-1, and so on), so the order is fixed by W alone.

Every lane is independent until ``vector_sum``, so results depend on the vector
width: a machine without AVX-512 (32-byte vectors) adds in another order than one
with it, and results agree to rounding, not bit for bit. On one machine they are
bit-identical for any thread count. With ``NUMBA_DISABLE_JIT=1`` the same nine
names are NumPy code with the same meaning, so the kernels still run as Python.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model


def _target_has_avx512():
    features = numba.config.CPU_FEATURES or binding.get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


#: Bytes per vector: one AVX-512 register where the CPU has them, else one AVX register.
VECTOR_BYTES = 64 if _target_has_avx512() else 32

#: Bytes per tile: the unit of :mod:`.microkernels`, whose sums (8 tiles) should fill half the vector
#: registers. AVX-512 has 32 registers, so a tile is two of them; AVX2 has 16, so a tile is one. With
#: 16 AVX2 vectors of sums (the AVX-512 tile shape) the sums spilled to memory and the convs ran at half
#: speed: 38 against 77 GFLOPS on a Zen 3 core, 64×128×4×4 by 3×3.
TILE_BYTES = 2 * VECTOR_BYTES if VECTOR_BYTES == 64 else VECTOR_BYTES


def lanes(dtype, size=VECTOR_BYTES):
    """W for ``dtype``: 16 float32 or 8 float64 lanes with AVX-512 (with ``size=TILE_BYTES``, a tile's)."""
    return size // np.dtype(dtype).itemsize


if numba.config.DISABLE_JIT:
    def vector_width(row):
        return lanes(row.dtype)

    def vector_load(row, index):
        return row[index:index + lanes(row.dtype)].copy()

    def vector_store(row, index, vector):
        row[index:index + vector.shape[0]] = vector

    def vector_splat(value):
        return np.full(lanes(np.asarray(value).dtype), value)

    def tile_width(row):
        return lanes(row.dtype, TILE_BYTES)

    def tile_load(row, index):
        return row[index:index + lanes(row.dtype, TILE_BYTES)].copy()

    def tile_splat(value):
        return np.full(lanes(np.asarray(value).dtype, TILE_BYTES), value)

    def vector_fma(a, b, c):
        return a * b + c

    def vector_add(a, b):
        return a + b

    def vector_sub(a, b):
        return a - b

    def vector_max(a, b):
        return np.where(b > a, b, a)

    def _halving(vector, combine):
        while vector.shape[0] > 1:
            half = vector.shape[0] // 2
            vector = combine(vector[:half], vector[half:])
        return vector[0]

    def vector_sum(vector):
        return _halving(vector, np.add)

    def vector_peak(vector):
        return _halving(vector, vector_max)
else:
    class FloatVector(types.Type):
        """One machine vector of ``width`` floats of ``dtype`` (a Numba type: LLVM ``<width x dtype>``)."""

        def __init__(self, dtype, width):
            self.dtype, self.width = dtype, width
            super().__init__(name=f"FloatVector({dtype} x {width})")

    @register_model(FloatVector)
    class _FloatVectorModel(models.PrimitiveModel):
        def __init__(self, dmm, fe_type):
            element = dmm.lookup(fe_type.dtype).get_value_type()
            super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.width))

    def _vector_type(dtype, size=VECTOR_BYTES):
        return FloatVector(dtype, size * 8 // dtype.bitwidth)

    def _element_pointer(context, builder, row_type, row, index, vector_type):
        data = context.make_array(row_type)(context, builder, row).data
        return builder.bitcast(builder.gep(data, [index]), context.get_value_type(vector_type).as_pointer())

    def _lane_indices(indices):
        return ir.Constant(ir.VectorType(ir.IntType(32), len(indices)), list(indices))

    def _check_contiguous(row, name):
        # The pointer arithmetic below ignores strides: a strided view would be read wrongly, not refused.
        if not (isinstance(row, types.Array) and row.ndim == 1 and row.layout == "C"):
            raise numba.core.errors.TypingError(f"{name}: row must be a 1-D C-contiguous array, got {row}")

    def _sized(size, name):
        """The three operations whose type is a width: vectors of ``size`` bytes (``name``: vector or tile)."""

        @intrinsic
        def width_of(typingctx, row):
            width = _vector_type(row.dtype, size).width

            def codegen(context, builder, signature, args):
                return context.get_constant(types.intp, width)
            return types.intp(row), codegen

        @intrinsic
        def load(typingctx, row, index):
            _check_contiguous(row, f"{name}_load")
            vector_type = _vector_type(row.dtype, size)

            def codegen(context, builder, signature, args):
                pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1], vector_type)
                return builder.load(pointer, align=row.dtype.bitwidth // 8)
            return vector_type(row, index), codegen

        @intrinsic
        def splat(typingctx, value):
            vector_type = _vector_type(value, size)

            def codegen(context, builder, signature, args):
                undefined = ir.Constant(context.get_value_type(vector_type), ir.Undefined)
                first = builder.insert_element(undefined, args[0], ir.Constant(ir.IntType(32), 0))
                return builder.shuffle_vector(first, undefined, _lane_indices([0] * vector_type.width))
            return vector_type(value), codegen
        return width_of, load, splat

    vector_width, vector_load, vector_splat = _sized(VECTOR_BYTES, "vector")
    tile_width, tile_load, tile_splat = _sized(TILE_BYTES, "tile")

    @intrinsic
    def vector_store(typingctx, row, index, vector):
        _check_contiguous(row, "vector_store")
        def codegen(context, builder, signature, args):
            pointer = _element_pointer(context, builder, signature.args[0], args[0], args[1], vector)
            builder.store(args[2], pointer, align=row.dtype.bitwidth // 8)
            return context.get_dummy_value()
        return types.none(row, index, vector), codegen

    @intrinsic
    def vector_fma(typingctx, a, b, c):
        def codegen(context, builder, signature, args):
            vector = context.get_value_type(c)
            name = f"llvm.fma.v{c.width}f{c.dtype.bitwidth}"
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3), name)
            return builder.call(fma, args)
        return c(a, b, c), codegen

    @intrinsic
    def vector_add(typingctx, a, b):
        def codegen(context, builder, signature, args):
            return builder.fadd(*args)
        return a(a, b), codegen

    @intrinsic
    def vector_sub(typingctx, a, b):
        def codegen(context, builder, signature, args):
            return builder.fsub(*args)
        return a(a, b), codegen

    def _larger(builder, a, b):
        return builder.select(builder.fcmp_ordered(">", b, a), b, a)

    @intrinsic
    def vector_max(typingctx, a, b):
        def codegen(context, builder, signature, args):
            return _larger(builder, *args)
        return a(a, b), codegen

    def _halving(builder, value, width, combine):
        while width > 1:
            width //= 2
            low = builder.shuffle_vector(value, value, _lane_indices(range(width)))
            high = builder.shuffle_vector(value, value, _lane_indices(range(width, 2 * width)))
            value = combine(low, high)
        return builder.extract_element(value, ir.Constant(ir.IntType(32), 0))

    @intrinsic
    def vector_sum(typingctx, vector):
        def codegen(context, builder, signature, args):
            return _halving(builder, args[0], vector.width, builder.fadd)
        return vector.dtype(vector), codegen

    @intrinsic
    def vector_peak(typingctx, vector):
        def codegen(context, builder, signature, args):
            return _halving(builder, args[0], vector.width, lambda a, b: _larger(builder, a, b))
        return vector.dtype(vector), codegen
