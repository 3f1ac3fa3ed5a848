// RUN: irkit-opt %s -p parallel-reductions | filecheck %s

// parallel-reductions (GPU pipeline) turns reduction loop nests into scf.parallel with
// init values and an scf.reduce region; in a loop over rows, the row's reductions and its
// output loops become nested scf.parallel loops that the threads of a row share.

builtin.module {

  // a full float32 sum accumulated in f64: the 2-d nest is one 2-d reduction, init kept
  // CHECK-LABEL: func.func @full_sum(
  // CHECK:         %[[INIT:.*]] = arith.constant 0.000000e+00 : f64
  // CHECK:         %[[R:.*]] = "scf.parallel"(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[INIT]]) <{operandSegmentSizes = array<i32: 2, 2, 2, 1>}> ({
  // CHECK-NEXT:    ^{{.*}}(%[[I:.*]]: index, %[[J:.*]]: index):
  // CHECK-NEXT:      %[[A:.*]] = memref.load %x[%[[I]], %[[J]]] : memref<?x?xf32>
  // CHECK-NEXT:      %[[E:.*]] = arith.extf %[[A]] : f32 to f64
  // CHECK-NEXT:      scf.reduce(%[[E]] : f64) {
  // CHECK-NEXT:      ^{{.*}}(%[[L:.*]]: f64, %[[RR:.*]]: f64):
  // CHECK-NEXT:        %[[C:.*]] = arith.addf %[[L]], %[[RR]] fastmath<reassoc> : f64
  // CHECK-NEXT:        scf.reduce.return %[[C]] : f64
  // CHECK:         arith.truncf %[[R]] : f64 to f32
  // CHECK-NOT:     scf.for
  // CHECK:         func.return
  func.func @full_sum(%x: memref<?x?xf32>, %o: memref<f32>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?x?xf32>
    %m = memref.dim %x, %c1 : memref<?x?xf32>
    %init = arith.constant 0.000000e+00 : f64
    %s = scf.for %i = %c0 to %n step %c1 iter_args(%a = %init) -> (f64) {
      %t = scf.for %j = %c0 to %m step %c1 iter_args(%b = %a) -> (f64) {
        %v = memref.load %x[%i, %j] : memref<?x?xf32>
        %w = arith.extf %v : f32 to f64
        %u = arith.addf %b, %w fastmath<reassoc> : f64
        scf.yield %u : f64
      }
      scf.yield %t : f64
    }
    %r = arith.truncf %s : f64 to f32
    memref.store %r, %o[] : memref<f32>
    func.return
  }

  // a float max (no reassoc needed: maximumf is exact in any order)
  // CHECK-LABEL: func.func @full_max(
  // CHECK:         "scf.parallel"
  // CHECK:           scf.reduce(%{{.*}} : f64) {
  // CHECK:             arith.maximumf
  func.func @full_max(%x: memref<?xf64>, %o: memref<f64>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?xf64>
    %init = arith.constant 0xFFF0000000000000 : f64
    %s = scf.for %i = %c0 to %n step %c1 iter_args(%a = %init) -> (f64) {
      %v = memref.load %x[%i] : memref<?xf64>
      %u = arith.maximumf %a, %v : f64
      scf.yield %u : f64
    }
    memref.store %s, %o[] : memref<f64>
    func.return
  }

  // a float sum without reassoc keeps its order: left alone
  // CHECK-LABEL: func.func @ordered_sum(
  // CHECK-NOT:     scf.parallel
  // CHECK:         scf.for
  func.func @ordered_sum(%x: memref<?xf32>, %o: memref<f32>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?xf32>
    %init = arith.constant 0.000000e+00 : f32
    %s = scf.for %i = %c0 to %n step %c1 iter_args(%a = %init) -> (f32) {
      %v = memref.load %x[%i] : memref<?xf32>
      %u = arith.addf %a, %v : f32
      scf.yield %u : f32
    }
    memref.store %s, %o[] : memref<f32>
    func.return
  }

  // softmax rows: the max and the sum become reducing scf.parallel loops and the output loop
  // a plain one, all nested in the loop over rows
  // CHECK-LABEL: func.func @softmax_rows(
  // CHECK:         "scf.parallel"(%{{.*}}, %{{.*}}, %{{.*}}) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  // CHECK:           %[[MAX:.*]] = "scf.parallel"({{.*}}) <{operandSegmentSizes = array<i32: 1, 1, 1, 1>}>
  // CHECK:             arith.maximumf
  // CHECK:           %[[SUM:.*]] = "scf.parallel"({{.*}}) <{operandSegmentSizes = array<i32: 1, 1, 1, 1>}>
  // CHECK:             math.exp
  // CHECK:             arith.addf {{.*}} fastmath<reassoc>
  // CHECK:           "scf.parallel"({{.*}}) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}>
  // CHECK:             arith.divf %{{.*}}, %[[SUM]] : f64
  // CHECK:             memref.store
  // CHECK-NOT:       scf.for
  // CHECK:         func.return
  func.func @softmax_rows(%x: memref<?x?xf64>, %y: memref<?x?xf64>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?x?xf64>
    %m = memref.dim %x, %c1 : memref<?x?xf64>
    "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
    ^bb0(%i: index):
      %ninf = arith.constant 0xFFF0000000000000 : f64
      %mx = scf.for %j = %c0 to %m step %c1 iter_args(%a = %ninf) -> (f64) {
        %v = memref.load %x[%i, %j] : memref<?x?xf64>
        %u = arith.maximumf %a, %v : f64
        scf.yield %u : f64
      }
      %zero = arith.constant 0.000000e+00 : f64
      %sm = scf.for %j = %c0 to %m step %c1 iter_args(%a = %zero) -> (f64) {
        %v = memref.load %x[%i, %j] : memref<?x?xf64>
        %d = arith.subf %v, %mx : f64
        %e = math.exp %d : f64
        %u = arith.addf %a, %e fastmath<reassoc> : f64
        scf.yield %u : f64
      }
      scf.for %j = %c0 to %m step %c1 {
        %v = memref.load %x[%i, %j] : memref<?x?xf64>
        %d = arith.subf %v, %mx : f64
        %e = math.exp %d : f64
        %q = arith.divf %e, %sm : f64
        memref.store %q, %y[%i, %j] : memref<?x?xf64>
      }
      scf.reduce
    }) : (index, index, index) -> ()
    func.return
  }

  // a row body whose loop reads what a neighbour iteration writes is left alone
  // CHECK-LABEL: func.func @shifted_rows(
  // CHECK:         "scf.parallel"
  // CHECK:           scf.for {{.*}} iter_args
  // CHECK:           scf.for
  // CHECK:         func.return
  func.func @shifted_rows(%x: memref<?x?xf64>, %y: memref<?x?xf64>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?x?xf64>
    %m = memref.dim %x, %c1 : memref<?x?xf64>
    %m1 = arith.subi %m, %c1 : index
    "scf.parallel"(%c0, %n, %c1) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
    ^bb0(%i: index):
      %zero = arith.constant 0.000000e+00 : f64
      %sm = scf.for %j = %c0 to %m step %c1 iter_args(%a = %zero) -> (f64) {
        %v = memref.load %x[%i, %j] : memref<?x?xf64>
        %u = arith.addf %a, %v fastmath<reassoc> : f64
        scf.yield %u : f64
      }
      scf.for %j = %c0 to %m1 step %c1 {
        %k = arith.addi %j, %c1 : index
        %v = memref.load %y[%i, %k] : memref<?x?xf64>
        %q = arith.addf %v, %sm : f64
        memref.store %q, %y[%i, %j] : memref<?x?xf64>
      }
      scf.reduce
    }) : (index, index, index) -> ()
    func.return
  }

  // a reduction inside a loop that runs as one device segment (a scan's step) stays serial
  // CHECK-LABEL: func.func @in_a_serial_loop(
  // CHECK-NOT:     scf.parallel
  // CHECK:         func.return
  func.func @in_a_serial_loop(%x: memref<?xf64>, %o: memref<f64>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c4 = arith.constant 4 : index
    %n = memref.dim %x, %c0 : memref<?xf64>
    scf.for %t = %c0 to %c4 step %c1 {
      %init = arith.constant 0.000000e+00 : f64
      %s = scf.for %i = %c0 to %n step %c1 iter_args(%a = %init) -> (f64) {
        %v = memref.load %x[%i] : memref<?xf64>
        %u = arith.addf %a, %v fastmath<reassoc> : f64
        scf.yield %u : f64
      }
      memref.store %s, %o[] : memref<f64>
    }
    func.return
  }

  // a column sum as lower-to-loops writes it (an init loop, then rows outer, columns inner):
  // the init loop is parallel and the nest is interchanged, a thread per column walking the
  // rows in their order
  // CHECK-LABEL: func.func @column_sum(
  // CHECK:         "scf.parallel"(%{{.*}}, %[[M:.*]], %{{.*}}) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  // CHECK-NEXT:    ^{{.*}}(%[[J0:.*]]: index):
  // CHECK-NEXT:      memref.store %{{.*}}, %acc[%[[J0]]] : memref<?xf64>
  // CHECK-NEXT:      scf.reduce
  // CHECK:         "scf.parallel"(%{{.*}}, %[[M]], %{{.*}}) <{operandSegmentSizes = array<i32: 1, 1, 1, 0>}> ({
  // CHECK-NEXT:    ^{{.*}}(%[[J:.*]]: index):
  // CHECK-NEXT:      scf.for %[[I:.*]] = %{{.*}} to %[[N:.*]] step %{{.*}} {
  // CHECK-NEXT:        %[[A:.*]] = memref.load %acc[%[[J]]] : memref<?xf64>
  // CHECK-NEXT:        %[[V:.*]] = memref.load %x[%[[I]], %[[J]]] : memref<?x?xf64>
  // CHECK-NEXT:        %[[S:.*]] = arith.addf %[[A]], %[[V]] fastmath<reassoc> : f64
  // CHECK-NEXT:        memref.store %[[S]], %acc[%[[J]]] : memref<?xf64>
  // CHECK-NEXT:      }
  // CHECK-NEXT:      scf.reduce
  // CHECK-NOT:     scf.for
  // CHECK:         func.return
  func.func @column_sum(%x: memref<?x?xf64>, %acc: memref<?xf64>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?x?xf64>
    %m = memref.dim %x, %c1 : memref<?x?xf64>
    %zero = arith.constant 0.000000e+00 : f64
    scf.for %j = %c0 to %m step %c1 {
      memref.store %zero, %acc[%j] : memref<?xf64>
    }
    scf.for %i = %c0 to %n step %c1 {
      scf.for %j = %c0 to %m step %c1 {
        %a = memref.load %acc[%j] : memref<?xf64>
        %v = memref.load %x[%i, %j] : memref<?x?xf64>
        %s = arith.addf %a, %v fastmath<reassoc> : f64
        memref.store %s, %acc[%j] : memref<?xf64>
      }
    }
    func.return
  }

  // columns that depend on each other (y[j] reads y[j - 1]) are neither interchanged nor
  // parallel: the nest stays as written
  // CHECK-LABEL: func.func @dependent_columns(
  // CHECK-NOT:     scf.parallel
  // CHECK:         func.return
  func.func @dependent_columns(%x: memref<?x?xf64>, %y: memref<?xf64>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %n = memref.dim %x, %c0 : memref<?x?xf64>
    %m = memref.dim %x, %c1 : memref<?x?xf64>
    scf.for %i = %c0 to %n step %c1 {
      scf.for %j = %c1 to %m step %c1 {
        %p = arith.subi %j, %c1 : index
        %a = memref.load %y[%p] : memref<?xf64>
        %v = memref.load %x[%i, %j] : memref<?x?xf64>
        %s = arith.addf %a, %v : f64
        memref.store %s, %y[%j] : memref<?xf64>
      }
    }
    func.return
  }
}
