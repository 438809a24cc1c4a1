/**
 * The receiver refused records for what they hold (HTTP 400, 413, 422; a
 * `_bulk` item refused with a 4xx other than 409 and 429): sent again
 * unchanged they can never be taken. The exporter then sends the batch's
 * records one by one and sets aside, logged and counted, those still refused,
 * so one bad record cannot hold its sink back for good.
 */
export class RecordsRefused extends Error {}
