// Type-checks (compile only, never run) a realistic flow against the generated
// TypeScript client: sdk/check runs `tsc --noEmit --strict` over this file.
//
// Errors are read with `problemOf(operationId, e)` (src/operationErrors.ts, written by
// sdk/generate from the spec): its `code` is the union of the codes that operation's
// spec lists, so comparing it with a code the operation cannot answer does not compile.
import {
  AdminApi,
  Configuration,
  ConcertsApi,
  ErrorCode,
  OrdersApi,
  PaymentsApi,
  PointsApi,
  QueueApi,
  QueueState,
  ReservationsApi,
  ReservationState,
  problemOf,
  type Cancellation,
  type Order,
  type OrderPayment,
  type OperationId,
  type OperationProblem,
  type Payment,
  type QueueTicket,
  type ShowCancellation,
} from "./out/typescript/src";

const basePath = "http://localhost:8080";

/** The codes operation `Op` lists for HTTP `status` (`never` when it lists no such problem). */
type CodeOf<Op extends OperationId, S extends number> = Extract<OperationProblem<Op>, { status: S }>["code"];
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

// Facts of the spec, checked by tsc: each line stops compiling when its fact stops being true.
export const specFacts = {
  // Holding a seat answers a typed 409 SEAT_TAKEN, paying one a typed 409 ALREADY_PAID.
  holdSeatConflict: ErrorCode.SeatTaken satisfies CodeOf<"holdSeat", 409>,
  holdOrderConflict: ErrorCode.SeatTaken satisfies CodeOf<"holdOrder", 409>,
  payConflict: ErrorCode.AlreadyPaid satisfies CodeOf<"payReservation", 409>,
  payOrderConflict: ErrorCode.AlreadyPaid satisfies CodeOf<"payOrder", 409>,
  // Listing concerts answers no problem but 500 INTERNAL and 503 SERVICE_UNAVAILABLE.
  listConcertsStatuses: true satisfies Equal<OperationProblem<"listConcerts">["status"], 500 | 503>,
  listConcertsCodes: true satisfies Equal<OperationProblem<"listConcerts">["code"], "INTERNAL" | "SERVICE_UNAVAILABLE">,
  // @ts-expect-error: listing concerts answers no 409
  listConcertsConflict: ErrorCode.SeatTaken satisfies CodeOf<"listConcerts", 409>,
  // @ts-expect-error: holding a seat never answers ALREADY_PAID (that is paying's)
  holdSeatAlreadyPaid: ErrorCode.AlreadyPaid satisfies CodeOf<"holdSeat", 409>,
};

/**
 * `idToken` is the fan's id token from the operator's login service (a JWT): the
 * server takes the fan from its `sub`. (A server in development mode takes
 * `{ concertId, userId }` instead.)
 */
export async function book(idToken: string, concertId: number): Promise<Payment | "SEAT_TAKEN"> {
  let ticket: QueueTicket;
  try {
    ticket = await new QueueApi(new Configuration({ basePath })).joinQueue({ joinRequest: { concertId, idToken } });
  } catch (e) {
    const problem = await problemOf("joinQueue", e);
    if (problem?.code === ErrorCode.IdentityExpired) throw new Error("sign in again: the id token expired");
    // Checking the status narrows the code: a 409 here is SALE_CLOSED or SOLD_OUT.
    if (problem?.status === 409) throw new Error(problem.code === ErrorCode.SoldOut ? "sold out" : "the sale is closed");
    throw e;
  }

  // Every later call carries the queue token as its bearer credential.
  const config = new Configuration({ basePath, accessToken: ticket.token });
  const queue = new QueueApi(config);
  for (let i = 0; i < 600; i++) {
    const status = await queue.getQueueStatus();
    if (status.state === QueueState.Active) break;
    if (status.state === QueueState.Expired) throw new Error("token expired in line");
    await new Promise((r) => setTimeout(r, 1000));
  }

  const concerts = new ConcertsApi(config);
  const { schedules } = await concerts.listSchedules({ concertId });
  const scheduleId = schedules[0].id;
  const seat = (await concerts.getSeatMap({ scheduleId })).seats.find((s) => s.status === "AVAILABLE");
  if (seat === undefined) throw new Error("sold out");

  let reservationId: number;
  try {
    const hold = await new ReservationsApi(config).holdSeat({
      holdRequest: { scheduleId, seatNo: seat.seatNo },
    });
    reservationId = hold.id;
    const heldUntil: Date = hold.heldUntil;
    void heldUntil;
  } catch (e) {
    // SEAT_TAKEN is one of holdSeat's listed codes; a code it does not list would not compile here.
    const problem = await problemOf("holdSeat", e);
    if (problem?.code === ErrorCode.SeatTaken) return "SEAT_TAKEN";
    throw e;
  }

  const points = new PointsApi(config);
  const { balance } = await points.getBalance();
  if (balance < seat.price) {
    await points.chargePoints({
      idempotencyKey: crypto.randomUUID(),
      chargeRequest: { amount: seat.price - balance },
    });
  }

  // The same key on a retry never pays twice; a new key on a paid hold is 409 ALREADY_PAID.
  const idempotencyKey = crypto.randomUUID();
  try {
    const paid = await new PaymentsApi(config).payReservationRaw({ idempotencyKey, payRequest: { reservationId } });
    const replayed: boolean = paid.raw.headers.get("Idempotent-Replayed") === "true";
    void replayed;
    return await paid.value();
  } catch (e) {
    const problem = await problemOf("payReservation", e);
    if (problem?.code === ErrorCode.AlreadyPaid) throw new Error(`reservation ${reservationId} was paid already`);
    if (problem?.code === ErrorCode.InsufficientPoints) throw new Error("top up first");
    throw e;
  }
}

/** An operator creates a concert whose seats come in grades, with a cancellation policy. */
export async function createGradedConcert(adminKey: string): Promise<number> {
  const admin = new AdminApi(new Configuration({ basePath, apiKey: adminKey }));
  const created = await admin.createConcert({
    createConcert: {
      title: "Summer Tour",
      artist: "The Rustaceans",
      schedules: [
        {
          venue: "Olympic Hall",
          startsAt: new Date("2027-07-01T19:00:00Z"),
          grades: [
            { name: "VIP", price: 30000, firstSeat: 1, lastSeat: 20 },
            { name: "R", price: 20000, firstSeat: 21, lastSeat: 100 },
          ],
        },
      ],
      cancellation: { cutoffHours: 24, feePercent: 10 },
    },
  });
  return created.scheduleIds[0];
}

/**
 * A fan with an ACTIVE queue token orders two seats at once (all or nothing), or,
 * when one is taken, two seats of a grade; pays the order, reads it back and cancels
 * it: the refund is the total less the concert's cancellation fee.
 */
export async function orderPayCancel(
  token: string,
  scheduleId: number,
): Promise<{ order: Order; payment: OrderPayment; cancellation: Cancellation }> {
  const config = new Configuration({ basePath, accessToken: token });
  const orders = new OrdersApi(config);
  let order: Order;
  try {
    order = await orders.holdOrder({ orderRequest: { scheduleId, seats: new Set([7, 8]) } });
  } catch (e) {
    const problem = await problemOf("holdOrder", e);
    if (problem?.code !== ErrorCode.SeatTaken) throw e;
    // The detail names the taken seats; nothing was held. Take any two of a grade.
    order = await orders.holdOrder({ orderRequest: { scheduleId, grade: "R", quantity: 2 } });
  }
  const seats: string = order.seats.map((s) => `${s.seatNo} (${s.grade}, ${s.price})`).join(", ");
  void seats;

  const points = new PointsApi(config);
  const { balance } = await points.getBalance();
  if (balance < order.total) {
    await points.chargePoints({ idempotencyKey: crypto.randomUUID(), chargeRequest: { amount: order.total - balance } });
  }
  const paid = await orders.payOrderRaw({ orderId: order.id, idempotencyKey: crypto.randomUUID() });
  const replayed: boolean = paid.raw.headers.get("Idempotent-Replayed") === "true";
  void replayed;
  const payment = await paid.value();

  const read = await orders.getOrder({ orderId: order.id });
  if (read.status !== ReservationState.Confirmed) throw new Error(`order ${read.id} is ${read.status}`);
  const { orders: mine } = await orders.listOrders();
  void mine;

  // Paying ended the queue token; cancelling still takes it (the fan's own order).
  let cancellation: Cancellation;
  try {
    cancellation = await orders.cancelOrder({ orderId: order.id, idempotencyKey: crypto.randomUUID() });
  } catch (e) {
    const problem = await problemOf("cancelOrder", e);
    if (problem?.code === ErrorCode.CancellationClosed) throw new Error("too late to cancel: the show is soon");
    throw e;
  }
  const refund: number = cancellation.refund;
  const fee: number = cancellation.fee;
  void (refund + fee);
  return { order: read, payment, cancellation };
}

/** An operator cancels a show; paid orders are refunded in background batches. */
export async function cancelShow(adminKey: string, scheduleId: number): Promise<ShowCancellation> {
  const admin = new AdminApi(new Configuration({ basePath, apiKey: adminKey }));
  let progress = await admin.cancelShow({ scheduleId });
  for (let i = 0; i < 120 && progress.ordersToSettle > 0; i++) {
    await new Promise((r) => setTimeout(r, 500));
    progress = await admin.getShowCancellation({ scheduleId });
  }
  return progress;
}
