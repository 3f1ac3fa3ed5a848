// RUN: irkit-opt %s --emit=ptx | filecheck %s

// The GPU backend's mappings, in the PTX of loops-level functions as the GPU pipeline leaves
// them (parallel-reductions has made reductions scf.parallel; see backends/ptx_host.py and
// backends/ptx_reduce.py): parallel loops as grid-stride kernels, reductions as warp and block
// reductions, math as libdevice's functions.
// One module of PTX for sm_80; ptxas accepts it (tests/test_ptx.py assembles every op's).

// CHECK:       .version 7.0
// CHECK-NEXT:  .target sm_80
// CHECK:       .visible .global .align 4 .u32 irkit_error;

builtin.module {

  // an elementwise loop: a grid-stride kernel, i from ctaid * ntid + tid by ntid * nctaid
  // CHECK-LABEL: .visible .entry scale_k1(
  // CHECK:         mov.u32 [[CTA:%r[0-9]+]], %ctaid.x;
  // CHECK-NEXT:    mov.u32 [[NTID:%r[0-9]+]], %ntid.x;
  // CHECK-NEXT:    mul.wide.u32 [[BASE:%rd[0-9]+]], [[CTA]], [[NTID]];
  // CHECK-NEXT:    mov.u32 [[TID:%r[0-9]+]], %tid.x;
  // CHECK-NEXT:    cvt.u64.u32 [[TID64:%rd[0-9]+]], [[TID]];
  // CHECK-NEXT:    add.s64 [[I:%rd[0-9]+]], [[BASE]], [[TID64]];
  // CHECK:         mov.u32 [[NCTA:%r[0-9]+]], %nctaid.x;
  // CHECK:         mul.wide.u32 [[STRIDE:%rd[0-9]+]], [[NTID]], [[NCTA]];
  // CHECK:       [[LOOP:\$L__BB[0-9_]+]]:
  // CHECK-NEXT:    add.s64
  // CHECK-NEXT:    ld.global.b32 [[A:%r[0-9]+]]
  // CHECK-NEXT:    add.rn.f32 [[B:%r[0-9]+]], [[A]], [[A]];
  // CHECK-NEXT:    add.s64
  // CHECK-NEXT:    st.global.b32 [{{%rd[0-9]+}}], [[B]];
  // CHECK-NEXT:    add.s64 [[I]], [[I]], [[STRIDE]];
  // CHECK:         @{{%p[0-9]+}} bra [[LOOP]];
  // CHECK:         ret;
  func.func @scale(%x: memref<?xf32>) -> memref<?xf32> {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?xf32>
    %y = memref.alloc(%n) {alignment = 64 : i64} : memref<?xf32>
    %two = arith.constant 2.000000e+00 : f32
    "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
    ^bb0(%i: index):
      %a = memref.load %x[%i] : memref<?xf32>
      %b = arith.mulf %a, %two : f32
      memref.store %b, %y[%i] : memref<?xf32>
      scf.reduce
    }) : (index, index, index) -> ()
    func.return %y : memref<?xf32>
  }

  // a full reduction: each thread folds its grid-stride share, a warp by butterfly shuffles
  // (an f64 as two 32-bit halves), warp leaders into shared memory, the first warp folds
  // those, and its lane 0 adds the block's sum to the result cell with one atomic
  // CHECK-LABEL: .visible .entry total_r1(
  // CHECK:         .shared .align 8 .b8 total_r1_$_partials[256];
  // CHECK:         ld.global.b32 [[X:%r[0-9]+]]
  // CHECK-NEXT:    cvt.f64.f32 [[XD:%rd[0-9]+]], [[X]];
  // CHECK-NEXT:    add.rn.f64 [[S:%rd[0-9]+]], [[S]], [[XD]];
  // CHECK:         @{{%p[0-9]+}} bra {{\$L__BB[0-9_]+}};
  // CHECK:         shfl.sync.bfly.b32 {{%r[0-9]+}}, {{%r[0-9]+}}, 16, 31, -1;
  // CHECK:         shfl.sync.bfly.b32 {{%r[0-9]+}}, {{%r[0-9]+}}, 1, 31, -1;
  // CHECK:         st.shared.b64
  // CHECK:         bar.sync 0;
  // CHECK:         ld.shared.b64
  // CHECK:         shfl.sync.bfly.b32 {{%r[0-9]+}}, {{%r[0-9]+}}, 16, 31, -1;
  // CHECK:         atom.global.add.f64
  // CHECK:         ret;
  // the f32 result is made from the cell by a one-thread kernel, which passes the error flag on
  // CHECK-LABEL: .visible .entry total_s2(
  // CHECK:         cvt.rn.f32.f64
  // CHECK:         ld.global.b32 {{%rd[0-9]+}}, [irkit_error];
  func.func @total(%x: memref<?xf32>) -> memref<f32> {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?xf32>
    %out = memref.alloc() {alignment = 64 : i64} : memref<f32>
    %zero = arith.constant 0.000000e+00 : f64
    %s = "scf.parallel"(%c0, %n, %c1, %zero) <{operandSegmentSizes = array<i32: 1, 1, 1, 1>}> ({
    ^bb0(%i: index):
      %a = memref.load %x[%i] : memref<?xf32>
      %e = arith.extf %a : f32 to f64
      scf.reduce(%e : f64) {
      ^bb0(%l: f64, %r: f64):
        %c = arith.addf %l, %r fastmath<reassoc> : f64
        scf.reduce.return %c : f64
      }
    }) : (index, index, index, f64) -> f64
    %t = arith.truncf %s : f64 to f32
    memref.store %t, %out[] : memref<f32>
    func.return %out : memref<f32>
  }

  // a row reduction: one warp a row, lanes striding over its columns (32 apart: 128 bytes
  // of float32), then shuffles
  // CHECK-LABEL: .visible .entry row_max_k1(
  // CHECK:         mov.u32 {{%r[0-9]+}}, %tid.x;
  // CHECK:         and.b64 [[LANE:%rd[0-9]+]], {{%rd[0-9]+}}, 31;
  // CHECK:         shfl.sync.bfly.b32 [[O16:%r[0-9]+]], [[M:%r[0-9]+]], 16, 31, -1;
  // CHECK-NEXT:    max.NaN.f32 {{%r[0-9]+}}, [[M]], [[O16]];
  // CHECK:         shfl.sync.bfly.b32 {{%r[0-9]+}}, {{%r[0-9]+}}, 1, 31, -1;
  // CHECK:         st.global.b32
  // CHECK:         ld.global.b32 [[X:%r[0-9]+]]
  // CHECK-NEXT:    max.NaN.f32 [[M]], [[M]], [[X]];
  // CHECK-NEXT:    add.s64 [[J:%rd[0-9]+]], [[J]], 32;
  // CHECK-NEXT:    add.s64 [[P:%rd[0-9]+]], [[P]], 128;
  // CHECK-NEXT:    setp.lt.u64 {{%p[0-9]+}}, [[J]]
  // CHECK-NEXT:    @{{%p[0-9]+}} bra {{\$L__BB[0-9_]+}};
  // CHECK-NOT:     bar.sync
  // CHECK:         ret;
  func.func @row_max(%m: memref<?x?xf32>) -> memref<?xf32> {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %rows = memref.dim %m, %c0 : memref<?x?xf32>
    %cols = memref.dim %m, %c1 : memref<?x?xf32>
    %out = memref.alloc(%rows) {alignment = 64 : i64} : memref<?xf32>
    "scf.parallel"(%c0, %rows, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
    ^bb0(%i: index):
      %ninf = arith.constant 0xff800000 : f32
      %r = "scf.parallel"(%c0, %cols, %c1, %ninf) <{operandSegmentSizes = array<i32: 1, 1, 1, 1>}> ({
      ^bb0(%j: index):
        %a = memref.load %m[%i, %j] : memref<?x?xf32>
        scf.reduce(%a : f32) {
        ^bb0(%l: f32, %rr: f32):
          %c = arith.maximumf %l, %rr : f32
          scf.reduce.return %c : f32
        }
      }) : (index, index, index, f32) -> f32
      memref.store %r, %out[%i] : memref<?xf32>
      scf.reduce
    }) : (index, index, index) -> ()
    func.return %out : memref<?xf32>
  }

  // float64 math is libdevice's __nv_exp, linked and inlined: no call, no approximation
  // CHECK-LABEL: .visible .entry exp64_k1(
  // CHECK-NOT:     call
  // CHECK-NOT:     ex2.approx
  // CHECK:         fma.rn.f64
  // CHECK:         ret;
  func.func @exp64(%x: memref<?xf64>) -> memref<?xf64> {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?xf64>
    %y = memref.alloc(%n) {alignment = 64 : i64} : memref<?xf64>
    "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
    ^bb0(%i: index):
      %a = memref.load %x[%i] : memref<?xf64>
      %b = math.exp %a : f64
      memref.store %b, %y[%i] : memref<?xf64>
      scf.reduce
    }) : (index, index, index) -> ()
    func.return %y : memref<?xf64>
  }

  // float32 too (__nv_logf), built with nvvm-reflect-ftz 0: subnormal inputs are scaled up
  // by 2^23 rather than flushed to zero, as numpy keeps them
  // CHECK-LABEL: .visible .entry log32_k1(
  // CHECK-NOT:     call
  // CHECK:         setp.lt.f32 [[SUB:%p[0-9]+]], [[X:%r[0-9]+]], 0f00800000;
  // CHECK-NEXT:    mul.rn.f32 [[SCALED:%r[0-9]+]], [[X]], 0f4B000000;
  // CHECK-NEXT:    selp.f32 {{%r[0-9]+}}, [[SCALED]], [[X]], [[SUB]];
  // CHECK-NOT:     call
  // CHECK:         ret;
  func.func @log32(%x: memref<?xf32>) -> memref<?xf32> {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?xf32>
    %y = memref.alloc(%n) {alignment = 64 : i64} : memref<?xf32>
    "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
    ^bb0(%i: index):
      %a = memref.load %x[%i] : memref<?xf32>
      %b = math.log %a : f32
      memref.store %b, %y[%i] : memref<?xf32>
      scf.reduce
    }) : (index, index, index) -> ()
    func.return %y : memref<?xf32>
  }
}
