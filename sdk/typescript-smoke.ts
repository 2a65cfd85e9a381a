// Type-checks (compile only, never run) a realistic flow against the generated
// TypeScript client: sdk/check runs `tsc --noEmit --strict` over this file.
import {
  Configuration,
  ConcertsApi,
  ErrorCode,
  PaymentsApi,
  PointsApi,
  ProblemFromJSON,
  QueueApi,
  QueueState,
  ReservationsApi,
  ResponseError,
  type Payment,
  type Problem,
  type QueueTicket,
} from "./out/typescript/src";

const basePath = "http://localhost:8080";

/** The problem body of a failed call, or undefined if it was not an HTTP error. */
async function problemOf(e: unknown): Promise<Problem | undefined> {
  if (e instanceof ResponseError) {
    return ProblemFromJSON(await e.response.json());
  }
  return undefined;
}

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
    const problem = await problemOf(e);
    if (problem?.code === ErrorCode.IdentityExpired) throw new Error("sign in again: the id token expired");
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
    const problem = await problemOf(e);
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
  const paid = await new PaymentsApi(config).payReservationRaw({ idempotencyKey, payRequest: { reservationId } });
  const replayed: boolean = paid.raw.headers.get("Idempotent-Replayed") === "true";
  void replayed;
  return await paid.value();
}
